// The web chat page served at / (rpc/chat_page.html, embedded at build time: no CDN, no build
// step). It talks to the same /v1/chat/completions any client uses.
#pragma once

#include <string_view>

namespace tpserve::rpc {

std::string_view chat_page_html();

}  // namespace tpserve::rpc
