// One logger for the whole process. Every line carries the rank; rank 0 logs info and above,
// other ranks warn and above unless TPSERVE_LOG_LEVEL (trace..off) says otherwise.
#pragma once

#include <spdlog/spdlog.h>

namespace tpserve {

// Call once the rank is known (before that the prefix reads "rank ?").
void init_logging(int rank, int world_size);

spdlog::logger& log();

int log_rank();

}  // namespace tpserve
