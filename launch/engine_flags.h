// The engine's KV and scheduling options as command-line flags, shared by `serve` and batch
// `generate` so that both take the same spelling.
#pragma once

#include <CLI/CLI.hpp>

#include "runtime/engine/engine.h"

namespace tpserve::launch {

void add_engine_flags(CLI::App& app, runtime::EngineOptions& options);

}  // namespace tpserve::launch
