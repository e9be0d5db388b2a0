#include "runtime/tokenizer/added_tokens.h"

#include <cstring>

namespace tpserve::runtime {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

void AddedTokens::add(AddedToken token) {
  if (token.content.empty()) return;
  if (auto it = index_by_content_.find(token.content); it != index_by_content_.end()) {
    tokens_[it->second] = token;  // a later listing of the same text updates it
    index_by_id_[token.id] = it->second;
    return;
  }
  size_t index = tokens_.size();
  auto& bucket = by_first_byte_[static_cast<unsigned char>(token.content[0])];
  index_by_id_[token.id] = index;
  index_by_content_[token.content] = index;
  tokens_.push_back(std::move(token));
  bucket.push_back(index);
}

const AddedToken* AddedTokens::by_id(int32_t id) const {
  auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedTokens::by_content(std::string_view content) const {
  auto it = index_by_content_.find(std::string(content));
  return it == index_by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedTokens::split(std::string_view text, std::vector<TextSegment>& out) const {
  size_t plain_start = 0, pos = 0;
  while (pos < text.size()) {
    const auto& bucket = by_first_byte_[static_cast<unsigned char>(text[pos])];
    // The longest match; the first added among equal lengths.
    const AddedToken* match = nullptr;
    for (size_t index : bucket) {
      const std::string& content = tokens_[index].content;
      if ((match == nullptr || content.size() > match->content.size()) && text.size() - pos >= content.size() &&
          std::memcmp(text.data() + pos, content.data(), content.size()) == 0) {
        match = &tokens_[index];
      }
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t begin = pos, end = pos + match->content.size();
    if (match->lstrip) while (begin > plain_start && is_space(text[begin - 1])) --begin;
    if (match->rstrip) while (end < text.size() && is_space(text[end])) ++end;
    if (begin > plain_start) out.push_back({text.substr(plain_start, begin - plain_start), -1});
    out.push_back({text.substr(begin, end - begin), match->id});
    plain_start = pos = end;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1});
}

}  // namespace tpserve::runtime
