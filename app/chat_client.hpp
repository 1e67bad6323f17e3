// `karvon chat`: asks the chat assistant one question over the WebSocket
// (/api/v1/ws) and prints the answer as it streams, so a newcomer can try
// streaming without a WebSocket tool. Beast stays in the .cpp.
#pragma once

#include <string>

namespace karvon::app {

struct chat_client_options {
  std::string server = "http://127.0.0.1:8080"; //!< http://HOST:PORT
  std::string key;                              //!< a client API key
  std::string user_id = "cli";
  std::string session_id;
  std::string language;
  std::string question;
  bool json = false; //!< print every frame as received
};

/// Connects, asks, prints tokens then the answer's source, confidence and
/// session. Returns 0 when an answer came, 1 on an error frame or a
/// connection problem (the message says which).
int run_chat_client(const chat_client_options& options);

} // namespace karvon::app
