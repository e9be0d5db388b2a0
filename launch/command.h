// Subcommands of the tpserve executable. Each register_* function adds its flags to the app and,
// when its subcommand is the one chosen, sets `runner` to the function that runs it and returns
// the process exit code. main() parses, then calls the runner inside the error handler that turns
// a tpserve::Error into one line and a non-zero exit.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace tpserve::launch {

using CommandRunner = std::function<int()>;

void register_generate_command(CLI::App& app, CommandRunner& runner);
void register_tokenize_command(CLI::App& app, CommandRunner& runner);
void register_serve_command(CLI::App& app, CommandRunner& runner);
void register_chat_command(CLI::App& app, CommandRunner& runner);
void register_bench_serve_command(CLI::App& app, CommandRunner& runner);
void register_doctor_command(CLI::App& app, CommandRunner& runner);
void register_plan_command(CLI::App& app, CommandRunner& runner);
void register_bench_command(CLI::App& app, CommandRunner& runner);
void register_scale_command(CLI::App& app, CommandRunner& runner);

}  // namespace tpserve::launch
