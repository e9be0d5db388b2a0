// tpserve::Error -> grpc::Status: the error's category picks the code, its message (which names
// the field) becomes the status message.
#pragma once

#include <grpcpp/support/status.h>

#include "common/error.h"

namespace tpserve::rpc {

grpc::StatusCode status_code(ErrorCode code);

inline grpc::Status to_status(const Error& error) {
  return grpc::Status(status_code(error.code()), error.what());
}

}  // namespace tpserve::rpc
