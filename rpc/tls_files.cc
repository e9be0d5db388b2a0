#include "rpc/tls_files.h"

#include <httplib.h>

#include <fstream>
#include <sstream>

#include "common/error.h"

namespace tpserve::rpc {

void check_tls_files(const std::string& cert, const std::string& key) {
  // cpp-httplib's TLS server loads the chain and the key into an OpenSSL context, which refuses a
  // key that is not the certificate's: the same check HTTPS will make, done once for both.
  httplib::SSLServer probe(cert.c_str(), key.c_str());
  if (!probe.is_valid()) {
    raise(ErrorCode::kInvalidArgument, "--tls-cert {} / --tls-key {}: not a PEM certificate and "
          "its private key", cert, key);
  }
}

std::string read_pem(const std::string& path, const char* flag) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  if (!file) raise(ErrorCode::kInvalidArgument, "{} {}: cannot read it", flag, path);
  return text.str();
}

}  // namespace tpserve::rpc
