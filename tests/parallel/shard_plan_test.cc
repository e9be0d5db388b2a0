// The shard plan against an independent reconstruction: every layout is packed here from labelled
// heads (the test's own reading of each family's layout), sliced with the plan for every rank, and
// the slices must (a) hold exactly the heads the rank's queries need, in canonical order, and
// (b) reassemble to the full tensor across ranks.
#include <gtest/gtest.h>

#include <set>
#include <tuple>
#include <vector>

#include "common/error.h"
#include "parallel/shard_plan.h"

namespace tpserve::parallel {
namespace {

enum class Part { kQ, kK, kV };
struct Label {
  Part part;
  int head;
  int dim;
  bool operator==(const Label&) const = default;
};

// Full fused tensor rows, labelled, in the checkpoint's layout.
std::vector<Label> pack(QkvLayout layout, int q_heads, int kv_heads, int head_dim) {
  std::vector<Label> rows;
  auto push_head = [&](Part part, int head) {
    for (int d = 0; d < head_dim; ++d) rows.push_back({part, head, d});
  };
  if (layout == QkvLayout::kConcatenated) {
    for (int h = 0; h < q_heads; ++h) push_head(Part::kQ, h);
    for (int h = 0; h < kv_heads; ++h) push_head(Part::kK, h);
    for (int h = 0; h < kv_heads; ++h) push_head(Part::kV, h);
  } else if (layout == QkvLayout::kPerHead) {
    // ChatGLM query_key_value without multi-query attention: [heads, 3 * head_dim], split in 3.
    for (int h = 0; h < q_heads; ++h) {
      push_head(Part::kQ, h);
      push_head(Part::kK, h);
      push_head(Part::kV, h);
    }
  } else {
    // InternLM2 wqkv: for each KV group, its q heads, then its k head, then its v head.
    const int group = q_heads / kv_heads;
    for (int g = 0; g < kv_heads; ++g) {
      for (int i = 0; i < group; ++i) push_head(Part::kQ, g * group + i);
      push_head(Part::kK, g);
      push_head(Part::kV, g);
    }
  }
  return rows;
}

std::vector<Label> take(const std::vector<Label>& full, const std::vector<Range>& ranges) {
  std::vector<Label> out;
  for (const Range& r : ranges) {
    EXPECT_LE(0, r.begin);
    EXPECT_LE(r.end, static_cast<int64_t>(full.size()));
    for (int64_t i = r.begin; i < r.end; ++i) out.push_back(full[static_cast<size_t>(i)]);
  }
  return out;
}

// What rank r must hold, in canonical order [its q heads; its k heads; its v heads].
std::vector<Label> expected_shard(const HeadShard& s, int head_dim) {
  std::vector<Label> rows;
  for (Part part : {Part::kQ, Part::kK, Part::kV}) {
    const int begin = part == Part::kQ ? s.q_head_begin : s.kv_head_begin;
    const int end = part == Part::kQ ? s.q_head_end : s.kv_head_end;
    for (int h = begin; h < end; ++h) {
      for (int d = 0; d < head_dim; ++d) rows.push_back({part, h, d});
    }
  }
  return rows;
}

struct Heads {
  int q;
  int kv;
};

class ShardPlanTest : public ::testing::TestWithParam<std::tuple<Heads, int>> {};

TEST_P(ShardPlanTest, FusedQkvLayoutsHoldTheRightHeadsAndReassemble) {
  const auto [heads, tp] = GetParam();
  const int head_dim = 4;
  if (heads.q % tp != 0) {
    EXPECT_THROW(shard_heads(heads.q, heads.kv, tp, 0), Error);
    return;
  }
  for (QkvLayout layout :
       {QkvLayout::kConcatenated, QkvLayout::kGroupInterleaved, QkvLayout::kPerHead}) {
    if (layout == QkvLayout::kPerHead && heads.q != heads.kv) {  // one KV head per query head
      const HeadShard s = shard_heads(heads.q, heads.kv, tp, 0);
      EXPECT_THROW(fused_qkv_rows(layout, heads.q, heads.kv, head_dim, s), Error);
      continue;
    }
    const std::vector<Label> full = pack(layout, heads.q, heads.kv, head_dim);
    std::vector<Label> all_q;
    std::set<std::pair<int, int>> kv_seen;  // (part, head)
    for (int rank = 0; rank < tp; ++rank) {
      const HeadShard s = shard_heads(heads.q, heads.kv, tp, rank);
      // Every local query head's KV head is held locally.
      for (int h = s.q_head_begin; h < s.q_head_end; ++h) {
        const int kv = h / s.group_size;
        EXPECT_GE(kv, s.kv_head_begin);
        EXPECT_LT(kv, s.kv_head_end);
      }
      // ... and no KV head that none of them reads.
      EXPECT_EQ(s.kv_head_begin, s.q_head_begin / s.group_size);
      EXPECT_EQ(s.kv_head_end - 1, (s.q_head_end - 1) / s.group_size);
      const std::vector<Label> shard =
          take(full, fused_qkv_rows(layout, heads.q, heads.kv, head_dim, s));
      ASSERT_EQ(shard, expected_shard(s, head_dim)) << "rank " << rank << " of " << tp;
      for (const Label& label : shard) {
        if (label.part == Part::kQ) {
          all_q.push_back(label);
        } else {
          kv_seen.insert({static_cast<int>(label.part), label.head});
        }
      }
    }
    // Query heads reassemble in order; every KV head appears on some rank.
    std::vector<Label> q_full;
    for (const Label& label : full) {
      if (label.part == Part::kQ) q_full.push_back(label);
    }
    std::sort(q_full.begin(), q_full.end(), [](const Label& a, const Label& b) {
      return std::tie(a.head, a.dim) < std::tie(b.head, b.dim);
    });
    EXPECT_EQ(all_q, q_full);
    EXPECT_EQ(kv_seen.size(), static_cast<size_t>(2 * heads.kv));
  }
}

TEST_P(ShardPlanTest, SeparateProjectionsMatchTheFusedConcatenation) {
  const auto [heads, tp] = GetParam();
  if (heads.q % tp != 0) return;
  const int head_dim = 4;
  const std::vector<Label> full = pack(QkvLayout::kConcatenated, heads.q, heads.kv, head_dim);
  const int64_t k_base = static_cast<int64_t>(heads.q) * head_dim;
  const int64_t v_base = k_base + static_cast<int64_t>(heads.kv) * head_dim;
  for (int rank = 0; rank < tp; ++rank) {
    const HeadShard s = shard_heads(heads.q, heads.kv, tp, rank);
    const Range q = q_rows(s, head_dim);
    const Range kv = kv_rows(s, head_dim);
    const std::vector<Range> separate = {
        q, {k_base + kv.begin, k_base + kv.end}, {v_base + kv.begin, v_base + kv.end}};
    EXPECT_EQ(take(full, separate), expected_shard(s, head_dim));
  }
}

INSTANTIATE_TEST_SUITE_P(
    HeadsAndSizes, ShardPlanTest,
    ::testing::Combine(::testing::Values(Heads{8, 2}, Heads{8, 8}, Heads{8, 1}, Heads{12, 2},
                                         Heads{6, 3}, Heads{32, 8}, Heads{24, 8}),
                       ::testing::Values(1, 2, 3, 4, 8)));

TEST(ShardPlan, EvenSplitAndGateUpReassemble) {
  for (int64_t n : {1, 7, 96, 160, 11008, 29568}) {
    for (int tp : {1, 2, 3, 4, 8}) {
      int64_t next = 0;
      std::vector<int64_t> gate, up;
      for (int rank = 0; rank < tp; ++rank) {
        const Range r = even_split(n, tp, rank);
        EXPECT_EQ(r.begin, next);
        EXPECT_LE(r.size(), n / tp + 1);
        EXPECT_GE(r.size(), n / tp);
        next = r.end;
        const std::vector<Range> fused = fused_gate_up_rows(n, tp, rank);
        ASSERT_EQ(fused.size(), 2u);
        for (int64_t i = fused[0].begin; i < fused[0].end; ++i) gate.push_back(i);
        for (int64_t i = fused[1].begin; i < fused[1].end; ++i) up.push_back(i);
        EXPECT_EQ(fused[0].size(), fused[1].size());
      }
      EXPECT_EQ(next, n);
      ASSERT_EQ(static_cast<int64_t>(gate.size()), n);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(gate[static_cast<size_t>(i)], i);
        EXPECT_EQ(up[static_cast<size_t>(i)], n + i);
      }
    }
  }
}

TEST(ShardPlan, VocabShardsArePaddedEquallyAndCoverTheVocabulary) {
  for (int64_t vocab : {1, 512, 151936, 152064, 32000, 65024}) {
    for (int tp : {1, 2, 3, 4, 8}) {
      int64_t next = 0;
      for (int rank = 0; rank < tp; ++rank) {
        const VocabShard s = shard_vocab(vocab, tp, rank);
        EXPECT_EQ(s.padded_rows, (vocab + tp - 1) / tp);
        EXPECT_EQ(s.begin, next);
        EXPECT_LE(s.end - s.begin, s.padded_rows);
        next = s.end;
      }
      EXPECT_EQ(next, vocab);
    }
  }
}

TEST(ShardPlan, SizeNotDividingTheQueryHeadsNamesTheNumbers) {
  try {
    shard_heads(8, 2, 3, 0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string message = e.what();
    EXPECT_NE(message.find("tensor-parallel size 3"), std::string::npos) << message;
    EXPECT_NE(message.find("8 query heads"), std::string::npos) << message;
    EXPECT_NE(message.find("valid sizes: 1, 2, 4, 8"), std::string::npos) << message;
  }
  EXPECT_THROW(shard_heads(8, 3, 2, 0), Error);  // 3 KV heads cannot serve 8 query heads evenly
}

}  // namespace
}  // namespace tpserve::parallel
