#include "actors/chat.hpp"

#include <algorithm>
#include <cmath>

#include <caf/all.hpp>
#include <pqxx/pqxx>
#include <sodium.h>

#include "actors/errors.hpp"
#include "actors/knowledge_base.hpp"
#include "actors/retrieval.hpp"
#include "persistence/chat_store.hpp"
#include "persistence/cluster_store.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::actors {

namespace {

// Below this, the best passage is not an answer.
constexpr double min_confidence = 0.12;

const char* no_answer(const std::string& language) {
  if (language == "uz")
    return "Kechirasiz, bu savolga bilimlar bazasida javob topa olmadim. "
           "Savolni boshqacha yozib ko'ring yoki qo'llab-quvvatlash xizmatiga "
           "murojaat qiling.";
  if (language == "ru")
    return "Извините, я не нашёл ответа на этот вопрос в базе знаний. "
           "Попробуйте спросить иначе или обратитесь в службу поддержки.";
  return "Sorry, I could not find an answer to that in the knowledge base. "
         "Try asking another way, or contact support.";
}

std::string new_session_id() {
  unsigned char bytes[16];
  randombytes_buf(bytes, sizeof bytes);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (auto b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

bool all_of_charset(const std::string& s, std::size_t max,
                    std::string_view extra) {
  if (s.empty() || s.size() > max)
    return false;
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || extra.find(c) != std::string_view::npos;
  });
}

class user_logic final : public entity_logic {
public:
  explicit user_logic(const kb_index& index) : index_(&index) {}

  void load(pqxx::connection_base&, const std::string& key) override {
    owner_ = key;
  }

  caf::message_handler handlers(caf::event_based_actor* self) override {
    return {
        [this, self](ask_atom, chat_request& req) -> caf::result<chat_reply> {
          auto reply = answer(req);
          auto rp = self->make_response_promise<chat_reply>();
          persistence::chat_turn_row turn{
              reply.session_id, owner_,       req.question,    reply.answer,
              reply.language,   reply.source, reply.confidence};
          // Acknowledged once the turn is committed, under the lease of the
          // user's shard.
          in_database(
              [this, turn](pqxx::connection_base& c) {
                pqxx::work tx{c};
                if (auto token = fence();
                    token && !persistence::holds_lease(tx, *token))
                  throw lease_lost{"this node no longer holds the lease of "
                                   + owner_};
                if (!persistence::record_chat_turn(tx, turn))
                  throw std::invalid_argument{"not your session"};
                tx.commit();
              },
              [rp, reply](std::optional<persistence::db_error> err) mutable {
                if (!err)
                  rp.deliver(reply);
                else if (err->message.find("not your session")
                         != std::string::npos)
                  rp.deliver(make_error(errc::not_found, "no such session"));
                else
                  rp.deliver(make_error(errc::unavailable, err->message));
              });
          return rp;
        },
    };
  }

private:
  chat_reply answer(const chat_request& req) const {
    chat_reply r;
    r.session_id = req.session_id.empty() ? new_session_id() : req.session_id;
    r.language = req.language.empty() ? detect_language(req.question, "en")
                                      : req.language;
    r.source = "kb";
    auto index = index_->current();
    auto hits = index->search_documents(req.question, r.language, 3);
    if (!hits.empty())
      r.confidence = index->confidence(req.question, hits[0]);
    for (auto& h : hits) {
      auto& p = index->passages()[h.passage];
      r.sources.push_back(
          {p.document_id, p.title, std::round(h.score * 1000) / 1000});
    }
    if (hits.empty() || r.confidence < min_confidence) {
      r.answer = no_answer(r.language);
      r.sources.clear();
    } else {
      r.answer = index->passages()[hits[0].passage].text;
    }
    r.confidence = std::round(r.confidence * 1000) / 1000;
    return r;
  }

  const kb_index* index_;
  std::string owner_;
};

} // namespace

std::string chat_owner_prefix(std::int64_t client_key_id) {
  return "user/api:" + std::to_string(client_key_id) + ":";
}

std::string chat_user_key(std::int64_t client_key_id,
                          const std::string& user_id) {
  return chat_owner_prefix(client_key_id) + user_id;
}

chat_history::chat_history(persistence::db_pool& pool) : pool_(&pool) {}

void chat_history::list(
    std::string session_id, std::string owner_prefix, std::int64_t before,
    int limit,
    std::function<void(result<std::vector<persistence::chat_turn_view>>)>
        done) {
  auto out = std::make_shared<
      std::optional<std::vector<persistence::chat_turn_view>>>();
  bool queued = pool_->submit(
      [=](pqxx::connection_base& c) {
        *out = persistence::list_chat_turns(c, session_id, owner_prefix, before,
                                            limit);
      },
      [out, done](std::optional<persistence::db_error> err) {
        if (err)
          return done(
              failure{errc::unavailable, "the database is unavailable", {}});
        if (!*out)
          return done(failure{errc::not_found, "no such session", {}});
        done(std::move(**out));
      });
  if (!queued)
    done(failure{errc::overloaded, "the database is busy; retry later", {}});
}

bool valid_chat_user_id(const std::string& user_id) {
  return all_of_charset(user_id, 128, "_.:@-");
}

bool valid_session_id(const std::string& session_id) {
  return all_of_charset(session_id, 64, "_-");
}

entity_kind user_kind(const kb_index& index) {
  auto* i = &index;
  return {"user",
          [i](const std::string&) { return std::make_unique<user_logic>(*i); }};
}

void add_chat_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<chat_request>("karvon.chat_request");
  cfg.add_message_type<chat_source>("karvon.chat_source");
  cfg.add_message_type<std::vector<chat_source>>("karvon.chat_sources");
  cfg.add_message_type<chat_reply>("karvon.chat_reply");
}

} // namespace karvon::actors
