// Why a listening socket could not be opened. gRPC and cpp-httplib only say that binding failed;
// a user needs the reason ("Address already in use") and the flag to change.
#pragma once

#include <string>

namespace tpserve::rpc {

// Tries to bind host:port exclusively (no SO_REUSEPORT) and closes the socket again; the system's
// reason when that fails ("Address already in use", "Cannot assign requested address"), or "the
// host name does not resolve" / "unknown reason".
std::string why_cannot_listen(const std::string& host, int port);

}  // namespace tpserve::rpc
