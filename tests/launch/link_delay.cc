// A fixed added latency on a link, for kernels without sch_netem: packets that an iptables
// NFQUEUE rule hands to queue N are held for D ms in user space, then accepted in arrival order.
// Used by tests/launch/multinode_e2e.sh inside one "node"'s network namespace:
//
//   ip netns exec NS tpserve_link_delay --queue 0 --delay-ms 20 --seconds 600 &
//   ip netns exec NS iptables-legacy -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0 --queue-bypass
//
// `--queue-bypass` lets packets through untouched whenever this program is not bound to the queue
// (not started yet, exited, killed), so the link never wedges. The verdicts are libnetfilter_queue's
// (nfq_set_verdict may be given later and out of the callback); only the holding is ours. Bounded:
// exits after --seconds, or on SIGTERM/SIGINT, accepting every packet still held.
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

struct Held {
  uint32_t packet_id;
  Clock::time_point due;
};

struct State {
  std::deque<Held> held;  // arrival order = due order: one fixed delay
  Clock::duration delay{};
  uint64_t packets = 0;
};

volatile sig_atomic_t stop_requested = 0;

void on_signal(int) { stop_requested = 1; }

int on_packet(nfq_q_handle*, nfgenmsg*, nfq_data* packet, void* user) {
  auto* state = static_cast<State*>(user);
  const nfqnl_msg_packet_hdr* header = nfq_get_msg_packet_hdr(packet);
  if (header == nullptr) return 0;
  state->held.push_back({ntohl(header->packet_id), Clock::now() + state->delay});
  ++state->packets;
  return 0;
}

void release(nfq_q_handle* queue, State& state, bool all) {
  const auto now = Clock::now();
  while (!state.held.empty() && (all || state.held.front().due <= now)) {
    nfq_set_verdict(queue, state.held.front().packet_id, NF_ACCEPT, 0, nullptr);
    state.held.pop_front();
  }
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "link_delay: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

long parse_option(int argc, char** argv, const char* name, long fallback, long low, long high) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) != 0) continue;
    char* end = nullptr;
    const long value = std::strtol(argv[i + 1], &end, 10);
    if (*end != '\0' || value < low || value > high) {
      std::fprintf(stderr, "link_delay: %s must be an integer in [%ld, %ld], got '%s'\n", name, low,
                   high, argv[i + 1]);
      std::exit(2);
    }
    return value;
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const long queue_number = parse_option(argc, argv, "--queue", 0, 0, 65535);
  const long delay_ms = parse_option(argc, argv, "--delay-ms", 20, 0, 10000);
  const long seconds = parse_option(argc, argv, "--seconds", 600, 1, 86400);

  State state;
  state.delay = std::chrono::milliseconds(delay_ms);
  nfq_handle* handle = nfq_open();
  if (handle == nullptr) die("nfq_open");
  if (nfq_bind_pf(handle, AF_INET) < 0) die("nfq_bind_pf");
  nfq_q_handle* queue =
      nfq_create_queue(handle, static_cast<uint16_t>(queue_number), &on_packet, &state);
  if (queue == nullptr) die("nfq_create_queue " + std::to_string(queue_number));
  // Metadata only: the verdict needs the packet id, not its bytes.
  if (nfq_set_mode(queue, NFQNL_COPY_META, 0) < 0) die("nfq_set_mode");
  nfq_set_queue_maxlen(queue, 8192);
  nfnl_rcvbufsiz(nfq_nfnlh(handle), 8 << 20);

  struct sigaction action {};
  action.sa_handler = on_signal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  std::printf("link_delay: queue %ld, %ld ms: ready\n", queue_number, delay_ms);
  std::fflush(stdout);

  const int fd = nfq_fd(handle);
  const auto deadline = Clock::now() + std::chrono::seconds(seconds);
  alignas(8) char buffer[1 << 16];
  while (!stop_requested && Clock::now() < deadline) {
    // Sleep until the oldest held packet is due (or 100 ms when none is held).
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::milliseconds(100));
    if (!state.held.empty()) {
      wait = std::max(std::chrono::nanoseconds(0),
                      std::chrono::duration_cast<std::chrono::nanoseconds>(state.held.front().due -
                                                                           Clock::now()));
    }
    const timespec timeout{static_cast<time_t>(wait.count() / 1000000000),
                           static_cast<long>(wait.count() % 1000000000)};
    pollfd poll_fd{fd, POLLIN, 0};
    const int ready = ppoll(&poll_fd, 1, &timeout, nullptr);
    if (ready < 0 && errno != EINTR) die("ppoll");
    if (ready > 0) {
      // Drain what arrived; ENOBUFS means the kernel dropped queue messages (the packets are
      // dropped too, as a full link would), not a reason to stop.
      for (;;) {
        const ssize_t length = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (length < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS) break;
          die("recv");
        }
        nfq_handle_packet(handle, buffer, static_cast<int>(length));
      }
    }
    release(queue, state, /*all=*/false);
  }
  release(queue, state, /*all=*/true);
  nfq_destroy_queue(queue);
  nfq_close(handle);
  std::printf("link_delay: held %llu packets for %ld ms each\n",
              static_cast<unsigned long long>(state.packets), delay_ms);
  return 0;
}
