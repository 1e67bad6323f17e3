#include <gtest/gtest.h>

#include "gateway/request_checks.hpp"

namespace karvon::gateway {
namespace {

TEST(FramingProblem, accepts_a_plain_content_length_or_plain_chunked) {
  EXPECT_EQ(framing_problem({{"Content-Length", "12"}}), "");
  EXPECT_EQ(framing_problem({{"Transfer-Encoding", "chunked"}}), "");
  EXPECT_EQ(framing_problem({{"transfer-encoding", " Chunked "}}), "");
  EXPECT_EQ(framing_problem({}), "");
}

TEST(FramingProblem, refuses_transfer_encodings_other_than_chunked) {
  EXPECT_NE(framing_problem({{"Transfer-Encoding", "gzip"}}), "");
  EXPECT_NE(framing_problem({{"Transfer-Encoding", "gzip, chunked"}}), "");
  EXPECT_NE(framing_problem({{"Transfer-Encoding", "chunked, identity"}}), "");
  EXPECT_NE(framing_problem({{"Transfer-Encoding", "chunked"},
                             {"Transfer-Encoding", "chunked"}}),
            "");
}

TEST(FramingProblem, refuses_transfer_encoding_with_content_length) {
  EXPECT_NE(framing_problem(
                {{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}),
            "");
  // The case Boost 1.74's parser lets through.
  EXPECT_NE(
      framing_problem({{"Transfer-Encoding", "gzip"}, {"Content-Length", "5"}}),
      "");
}

TEST(FramingProblem, refuses_differing_or_odd_content_lengths) {
  EXPECT_NE(framing_problem({{"Content-Length", "5"}, {"Content-Length", "6"}}),
            "");
  EXPECT_NE(framing_problem({{"Content-Length", "5, 5"}}), "");
  EXPECT_NE(framing_problem({{"Content-Length", "-1"}}), "");
  EXPECT_NE(framing_problem({{"Content-Length", "+5"}}), "");
  EXPECT_NE(framing_problem({{"Content-Length", ""}}), "");
}

TEST(JsonContentType, accepts_application_json_with_utf8_charset) {
  EXPECT_TRUE(is_json_content_type("application/json"));
  EXPECT_TRUE(is_json_content_type("Application/JSON; charset=UTF-8"));
  EXPECT_TRUE(is_json_content_type("application/json;charset=\"utf-8\""));
  EXPECT_FALSE(is_json_content_type("application/json; charset=latin1"));
  EXPECT_FALSE(is_json_content_type("text/plain"));
  EXPECT_FALSE(is_json_content_type("application/jsonx"));
  EXPECT_FALSE(is_json_content_type(""));
}

} // namespace
} // namespace karvon::gateway
