// The shared secret both front ends check (serve --api-key or TPSERVE_API_KEY): HTTP's
// "Authorization: Bearer KEY" header and the same value in gRPC's "authorization" metadata.
#pragma once

#include <string>
#include <string_view>

namespace tpserve::rpc {

// True when no key is configured, or `authorization` is "Bearer <key>". The comparison takes the
// same time wherever the first difference is, so the key cannot be guessed byte by byte.
bool authorized(std::string_view authorization, const std::string& key);

}  // namespace tpserve::rpc
