#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <memory>
#include <string>

namespace tpserve {

namespace {

int g_rank = -1;

std::shared_ptr<spdlog::logger> make_logger() {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(spdlog::color_mode::never);
  auto logger = std::make_shared<spdlog::logger>("tpserve", sink);
  logger->set_pattern("[%H:%M:%S.%e] [rank ?] [%l] %v");
  logger->set_level(spdlog::level::info);
  logger->flush_on(spdlog::level::warn);
  return logger;
}

std::shared_ptr<spdlog::logger>& logger_instance() {
  static std::shared_ptr<spdlog::logger> logger = make_logger();
  return logger;
}

}  // namespace

void init_logging(int rank, int world_size) {
  g_rank = rank;
  auto& logger = logger_instance();
  logger->set_pattern(fmt::format("[%H:%M:%S.%e] [rank {}/{}] [%l] %v", rank, world_size));
  spdlog::level::level_enum level = rank == 0 ? spdlog::level::info : spdlog::level::warn;
  if (const char* env = std::getenv("TPSERVE_LOG_LEVEL"); env != nullptr && *env != '\0') {
    level = spdlog::level::from_str(env);
  }
  logger->set_level(level);
}

spdlog::logger& log() { return *logger_instance(); }

int log_rank() { return g_rank; }

}  // namespace tpserve
