// The shard plan against an independent reconstruction: every layout is packed here from labelled
// heads (the test's own reading of each family's layout), sliced with the plan for every rank, and
// the slices must (a) hold exactly the heads the rank's queries need, in canonical order, and
// (b) reassemble to the full tensor across ranks — at every N up to the query heads, dividing
// them or not. split_range against its definition: coverage without overlap, balance, alignment.
#include <gtest/gtest.h>

#include <algorithm>
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
  if (tp > heads.q) {
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
      // Balanced: q heads per rank differ by at most one, the larger parts first.
      EXPECT_GE(s.num_q_heads(), heads.q / tp);
      EXPECT_LE(s.num_q_heads(), (heads.q + tp - 1) / tp);
      EXPECT_EQ(s.num_q_heads() > heads.q / tp, rank < heads.q % tp);
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
  if (tp > heads.q) return;
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
                       ::testing::Values(1, 2, 3, 4, 5, 7, 8, 9, 13)));

// split_range tiles [0, total) in order, every inner boundary on an `align` multiple, block counts
// differing by at most one with the larger parts first, for totals that are and are not multiples
// of align and of parts.
TEST(ShardPlan, SplitRangeCoversWithoutOverlapBalancedAndAligned) {
  for (int64_t total : {0, 1, 7, 9, 12, 96, 128, 160, 29568, 29569}) {
    for (int64_t align : {1, 4, 32, 128}) {
      for (int parts : {1, 2, 3, 4, 5, 7, 8, 9}) {
        const int64_t blocks = (total + align - 1) / align;
        int64_t next = 0;
        int64_t largest = 0;
        for (int part = 0; part < parts; ++part) {
          const Range r = split_range(total, parts, part, align);
          EXPECT_EQ(r.begin, next) << total << "/" << parts << " align " << align;
          EXPECT_LE(r.begin, r.end);
          if (r.end != total) EXPECT_EQ(r.end % align, 0) << total << "/" << parts << " align " << align;
          const int64_t r_blocks = (r.size() + align - 1) / align;
          EXPECT_GE(r_blocks, blocks / parts);
          EXPECT_LE(r_blocks, (blocks + parts - 1) / parts);
          if (part < blocks % parts) EXPECT_EQ(r_blocks, blocks / parts + 1);
          largest = std::max(largest, r.size());
          next = r.end;
        }
        EXPECT_EQ(next, total) << total << "/" << parts << " align " << align;
        EXPECT_EQ(largest_part(total, parts, align), largest);
      }
    }
  }
  // By hand: 12 heads over 5 ranks; 160 units in groups of 32 over 3 ranks (5 groups: 2, 2, 1);
  // 100 units in groups of 32 over 2 (4 blocks, the last holding 4 units).
  const std::vector<Range> heads = {split_range(12, 5, 0), split_range(12, 5, 1), split_range(12, 5, 2),
                                    split_range(12, 5, 3), split_range(12, 5, 4)};
  EXPECT_EQ(heads, (std::vector<Range>{{0, 3}, {3, 6}, {6, 8}, {8, 10}, {10, 12}}));
  EXPECT_EQ(split_range(160, 3, 0, 32), (Range{0, 64}));
  EXPECT_EQ(split_range(160, 3, 1, 32), (Range{64, 128}));
  EXPECT_EQ(split_range(160, 3, 2, 32), (Range{128, 160}));
  EXPECT_EQ(split_range(100, 2, 1, 32), (Range{64, 100}));
}

// An uneven head split where a KV group straddles two ranks: both hold it (replicated), and the
// rank whose heads touch two groups holds two KV heads. 12 q / 4 kv heads (groups of 3) over 5
// ranks: q 3,3,2,2,2 -> [0,3) [3,6) [6,8) [8,10) [10,12); KV [0] [1] [2] [2,3] [3].
TEST(ShardPlan, UnevenHeadsReplicateAStraddledKvGroup) {
  const std::vector<std::pair<int, int>> kv = {{0, 1}, {1, 2}, {2, 3}, {2, 4}, {3, 4}};
  for (int rank = 0; rank < 5; ++rank) {
    const HeadShard s = shard_heads(12, 4, 5, rank);
    EXPECT_EQ(std::make_pair(s.kv_head_begin, s.kv_head_end), kv[static_cast<size_t>(rank)])
        << "rank " << rank;
  }
}

TEST(ShardPlan, SplitRangeAndGateUpReassemble) {
  for (int64_t n : {1, 7, 96, 160, 11008, 29568}) {
    for (int tp : {1, 2, 3, 4, 8}) {
      int64_t next = 0;
      std::vector<int64_t> gate, up;
      for (int rank = 0; rank < tp; ++rank) {
        const Range r = split_range(n, tp, rank);
        EXPECT_EQ(r.begin, next);
        EXPECT_LE(r.size(), n / tp + 1);
        EXPECT_GE(r.size(), n / tp);
        next = r.end;
        const std::vector<Range> fused = fused_gate_up_rows(n, r);
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
  for (int64_t vocab : {1, 10, 512, 151936, 152064, 32000, 65024}) {
    for (int tp : {1, 2, 3, 4, 5, 7, 8}) {
      int64_t next = 0;
      for (int rank = 0; rank < tp; ++rank) {
        const VocabShard s = shard_vocab(vocab, tp, rank);
        EXPECT_EQ(s.padded_rows, (vocab + tp - 1) / tp);
        EXPECT_EQ(s.begin, next);
        EXPECT_LE(s.end - s.begin, s.padded_rows);
        EXPECT_GE(s.end - s.begin, vocab / tp);  // balanced: no rank left nearly empty
        next = s.end;
      }
      EXPECT_EQ(next, vocab);
    }
  }
}

TEST(ShardPlan, SizeAboveTheQueryHeadsNamesTheLimit) {
  EXPECT_NO_THROW(shard_heads(8, 2, 3, 2));  // not dividing is fine: 3, 3, 2
  EXPECT_NO_THROW(shard_heads(8, 2, 8, 7));
  try {
    shard_heads(8, 2, 9, 0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string message = e.what();
    EXPECT_NE(message.find("tensor-parallel size 9 exceeds the 8 query heads"), std::string::npos)
        << message;
    EXPECT_NE(message.find("valid sizes: 1 to 8"), std::string::npos) << message;
  }
  EXPECT_THROW(shard_heads(8, 3, 2, 0), Error);  // 3 KV heads cannot serve 8 query heads evenly
}

}  // namespace
}  // namespace tpserve::parallel
