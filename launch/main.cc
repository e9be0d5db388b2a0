// tpserve: one executable, several subcommands (launch/command.h). Errors at the edges arrive here
// as tpserve::Error and leave as one line and a non-zero exit.
#include <cstdio>

#include "common/error.h"
#include "common/log.h"
#include "launch/command.h"

int main(int argc, char** argv) {
  CLI::App app{"tpserve: tensor-parallel LLM serving (launch with mpirun -np N)"};
  app.require_subcommand(1);
  // --help shows every option's default; subcommands copy these option defaults when created.
  app.option_defaults()->always_capture_default();
  tpserve::launch::CommandRunner runner;
  tpserve::launch::register_generate_command(app, runner);
  tpserve::launch::register_tokenize_command(app, runner);
  tpserve::launch::register_serve_command(app, runner);
  tpserve::launch::register_chat_command(app, runner);
  tpserve::launch::register_bench_serve_command(app, runner);
  tpserve::launch::register_doctor_command(app, runner);
  tpserve::launch::register_plan_command(app, runner);
  tpserve::launch::register_bench_command(app, runner);
  tpserve::launch::register_scale_command(app, runner);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return runner();
  } catch (const tpserve::Error& e) {
    tpserve::log().error("{}", e.what());
    return 1;
  }
}
