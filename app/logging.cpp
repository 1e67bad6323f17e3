#include "app/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace karvon::app {

namespace {

// %* : the message, escaped as a JSON string body, so that a log line stays
// one valid JSON object whatever the message holds.
class json_message_flag final : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static const char hex[] = "0123456789abcdef";
    for (char c : msg.payload) {
      switch (c) {
      case '"':
        dest.append(std::string_view{"\\\""});
        break;
      case '\\':
        dest.append(std::string_view{"\\\\"});
        break;
      case '\n':
        dest.append(std::string_view{"\\n"});
        break;
      case '\r':
        dest.append(std::string_view{"\\r"});
        break;
      case '\t':
        dest.append(std::string_view{"\\t"});
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char esc[] = {'\\', 'u', '0', '0', hex[(c >> 4) & 0xf], hex[c & 0xf]};
          dest.append(esc, esc + sizeof esc);
        } else {
          dest.push_back(c);
        }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<json_message_flag>();
  }
};

} // namespace

void setup_logging(const config::log_settings& log) {
  spdlog::drop("karvon"); // set up again (tests, bench): replace it
  auto logger = spdlog::stderr_color_mt("karvon");
  if (log.format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(
        spdlog::pattern_time_type::utc);
    formatter->add_flag<json_message_flag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","pid":%P,"tid":%t,"msg":"%*"})");
    logger->set_formatter(std::move(formatter));
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(log.level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

} // namespace karvon::app
