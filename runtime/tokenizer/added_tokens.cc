#include "runtime/tokenizer/added_tokens.h"

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
  const auto index = static_cast<int64_t>(tokens_.size());
  uint64_t& first = root_children_[static_cast<unsigned char>(token.content[0])];
  if (first == 0) {
    first = token_at_node_.size();
    token_at_node_.push_back(-1);
  }
  uint64_t node = first;
  for (char c : std::string_view(token.content).substr(1)) {
    auto [edge, inserted] = children_.try_emplace(edge_key(node, c), token_at_node_.size());
    if (inserted) token_at_node_.push_back(-1);
    node = edge->second;
  }
  token_at_node_[node] = index;
  index_by_id_[token.id] = static_cast<size_t>(index);
  index_by_content_[token.content] = static_cast<size_t>(index);
  tokens_.push_back(std::move(token));
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
    // The longest token starting here: one trie step per byte, however many tokens share a prefix.
    const AddedToken* match = nullptr;
    uint64_t node = root_children_[static_cast<unsigned char>(text[pos])];
    for (size_t i = pos + 1; node != 0; ++i) {
      if (token_at_node_[node] >= 0) match = &tokens_[static_cast<size_t>(token_at_node_[node])];
      if (i == text.size()) break;
      auto edge = children_.find(edge_key(node, text[i]));
      node = edge == children_.end() ? 0 : edge->second;
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
