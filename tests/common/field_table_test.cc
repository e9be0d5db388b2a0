// The field-table check every outside-format reader uses: supported and harmless fields pass,
// refused ones are refused by name only when set, unknown ones are listed and logged once.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/field_table.h"
#include "tests/test_support.h"

namespace tpserve {
namespace {

using enum FieldUse;

constexpr FieldRule kTable[] = {
    {"width", kSupported, "the width"},
    {"comment", kHarmless, "bookkeeping"},
    {"fancy", kRefused, "fancy mode is not supported"},
    {"must_be_on", kRefused, "off is not supported", "true"},
    {"kind", kRefused, "only plain is", "\"plain\""},
};

std::vector<std::string> check(const nlohmann::json& object) {
  return check_fields(object, "dir/file.json", {kTable}, "outer.");
}

TEST(FieldTable, KnownFieldsPassAndUnknownOnesAreListedInOrder) {
  EXPECT_TRUE(check({{"width", 3}, {"comment", "x"}}).empty());
  const nlohmann::json object = nlohmann::json::parse(R"({"zeta": 1, "width": 2, "alpha": null})");
  EXPECT_EQ(check(object), (std::vector<std::string>{"outer.alpha", "outer.zeta"}));
}

TEST(FieldTable, RefusedFieldsPassOnlyWhenUnset) {
  for (const char* unset : {"null", "false", "0", "\"\"", "[]", "{}"}) {
    EXPECT_NO_THROW(check({{"fancy", nlohmann::json::parse(unset)}})) << unset;
  }
  EXPECT_NO_THROW(check({{"must_be_on", true}, {"kind", "plain"}}));
  EXPECT_NO_THROW(check({{"must_be_on", nullptr}}));
  const std::pair<nlohmann::json, std::string> refused[] = {
      {{{"fancy", true}}, "dir/file.json: field 'outer.fancy': true is not supported: fancy mode"},
      {{{"fancy", {1, 2}}}, "field 'outer.fancy': [1,2] is not supported"},
      {{{"must_be_on", false}}, "field 'outer.must_be_on': false is not supported: off is not"},
      {{{"kind", "odd"}}, "field 'outer.kind': \"odd\" is not supported: only plain is"},
  };
  for (const auto& [object, message] : refused) {
    try {
      check(object);
      ADD_FAILURE() << "accepted " << object.dump();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnimplemented);
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
}

TEST(FieldTable, UnknownFieldsAreOneWarningLinePerFileOnce) {
  testing::LogCapture capture;
  warn_unknown_fields("dir/a.json", {});
  warn_unknown_fields("dir/b.json", {"x", "rope_scaling.y"});
  warn_unknown_fields("dir/b.json", {"x", "rope_scaling.y"});
  EXPECT_EQ(capture.text(), "[warning] " + unknown_fields_line("dir/b.json", {"x", "rope_scaling.y"}) +
                                "\n");
  EXPECT_NE(capture.text().find("dir/b.json: ignoring fields tpserve does not know"),
            std::string::npos);
  EXPECT_NE(capture.text().find(": x, rope_scaling.y"), std::string::npos);
}

}  // namespace
}  // namespace tpserve
