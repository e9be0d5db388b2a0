// Runs `mpirun -np N tpserve serve ...` (or launch/mpirun.sh) as a child process for end-to-end
// tests: waits for the "serving ... on HOST:PORT" line, and stops it (SIGTERM, then SIGKILL) when
// the test is done.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace tpserve::testing {

// How the job is started: the launcher command line, and whether the job's stderr is kept in a
// file (stderr_text()) instead of passing through to the test's.
struct ServerLaunch {
  std::string launcher = TPSERVE_MPIRUN_STR;
  bool capture_stderr = false;
};

class ServerProcess {
 public:
  // Starts the server; throws std::runtime_error if it exits before reporting its port.
  ServerProcess(int np, const std::vector<std::string>& serve_args,
                const std::vector<std::string>& extra_env = {}, const ServerLaunch& launch = {}) {
    std::vector<std::string> args;
    std::istringstream mpirun(launch.launcher);
    for (std::string word; mpirun >> word;) args.push_back(word);
    args.insert(args.end(), {"-np", std::to_string(np), TPSERVE_BIN, "serve", "--port", "0"});
    args.insert(args.end(), serve_args.begin(), serve_args.end());
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    if (launch.capture_stderr) {
      char path[] = "/tmp/tpserve_serve_stderr_XXXXXX";
      const int fd = mkstemp(path);
      if (fd < 0) throw std::runtime_error("mkstemp");
      close(fd);
      stderr_path_ = path;
      posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, path, O_WRONLY | O_TRUNC, 0);
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_storage = extra_env;
    env_storage.push_back("OPENBLAS_NUM_THREADS=1");
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    std::vector<char*> envp;
    for (std::string& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data()) != 0) {
      throw std::runtime_error("cannot start mpirun");
    }
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    stdout_ = fdopen(out[0], "r");
    // The first stdout line names the port.
    char line[512];
    if (fgets(line, sizeof(line), stdout_) == nullptr) {
      stop(std::chrono::seconds(5));
      throw std::runtime_error("the server exited before it was serving");
    }
    const std::string text = line;
    const auto colon = text.rfind(':');
    const auto space = text.find(' ', colon);
    address_ = "127.0.0.1:" + text.substr(colon + 1, space - colon - 1);
    const auto metrics = text.find("metrics port ");
    if (metrics != std::string::npos) metrics_port_ = std::atoi(text.c_str() + metrics + 13);
    const auto rank0 = text.find("pid ");
    if (rank0 != std::string::npos) rank0_pid_ = std::atoi(text.c_str() + rank0 + 4);
  }

  ~ServerProcess() {
    if (pid_ > 0) stop(std::chrono::seconds(30));
    if (stdout_ != nullptr) fclose(stdout_);
    if (!stderr_path_.empty()) unlink(stderr_path_.c_str());
  }

  // What the job wrote to stderr so far (with ServerLaunch::capture_stderr).
  std::string stderr_text() const {
    std::ifstream file(stderr_path_);
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
  }

  const std::string& address() const { return address_; }
  int metrics_port() const { return metrics_port_; }
  pid_t rank0_pid() const { return rank0_pid_; }
  pid_t pid() const { return pid_; }

  void signal(int sig) { kill(pid_, sig); }

  // Waits for the process to exit; its exit status, or nullopt if it outlived `limit` (then it
  // is killed).
  std::optional<int> wait(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::nullopt;
  }

  // SIGTERM, and SIGKILL if it does not exit within `grace`.
  std::optional<int> stop(std::chrono::milliseconds grace) {
    signal(SIGTERM);
    auto status = wait(grace);
    if (!status && pid_ > 0) {
      kill(pid_, SIGKILL);
      wait(std::chrono::seconds(5));
    }
    return status;
  }

 private:
  pid_t pid_ = -1;
  FILE* stdout_ = nullptr;
  std::string address_;
  int metrics_port_ = -1;
  pid_t rank0_pid_ = -1;
  std::string stderr_path_;
};

}  // namespace tpserve::testing
