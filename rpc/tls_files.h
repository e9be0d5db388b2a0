// serve --tls-cert/--tls-key: both front ends check the pair the same way before listening, so a
// wrong file is one line naming both flags rather than a transport error from gRPC or the HTTP
// library.
#pragma once

#include <string>

namespace tpserve::rpc {

// Throws tpserve::Error(kInvalidArgument) naming both files unless `cert` is a PEM certificate
// (chain) and `key` its PEM private key.
void check_tls_files(const std::string& cert, const std::string& key);

// A PEM file's text (gRPC takes the PEM itself, not a path).
std::string read_pem(const std::string& path, const char* flag);

}  // namespace tpserve::rpc
