#include "actors/chat.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <unordered_map>

#include <caf/all.hpp>
#include <pqxx/pqxx>
#include <sodium.h>

#include "actors/errors.hpp"
#include "actors/knowledge_base.hpp"
#include "actors/llm.hpp"
#include "actors/retrieval.hpp"
#include "metrics/registry.hpp"
#include "persistence/batch_writer.hpp"
#include "persistence/chat_store.hpp"
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
  char hex[2 * sizeof bytes + 1];
  sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
  return hex;
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

const char* busy_note(const std::string& language) {
  if (language == "uz")
    return "Yordamchi hozir band, shuning uchun bilimlar bazasidagi eng mos "
           "javobni yubordim:";
  if (language == "ru")
    return "Ассистент сейчас перегружен, поэтому вот самый подходящий ответ "
           "из базы знаний:";
  return "The assistant is busy right now, so here is the closest answer "
         "from the knowledge base:";
}

const char* language_name(const std::string& language) {
  if (language == "uz")
    return "Uzbek (in the script the user wrote in)";
  if (language == "ru")
    return "Russian";
  return "English";
}

// The turns of a session a prompt carries, and the sessions an entity keeps.
constexpr std::size_t prompt_turns = 3;
constexpr std::size_t kept_sessions = 16;
// Passages in a prompt.
constexpr std::size_t prompt_passages = 3;

using steady = std::chrono::steady_clock;

double ms_since(steady::time_point t) {
  return std::round(std::chrono::duration<double, std::milli>(steady::now() - t)
                        .count()
                    * 1000)
         / 1000;
}

class user_logic final : public entity_logic {
public:
  explicit user_logic(const chat_services& services) : services_(services) {
    if (auto* m = services.metrics) {
      answers_ = &m->histograms("karvon_chat_answer_seconds",
                                "Time to answer an ask in its user entity "
                                "(the turn's write not included), by source.",
                                {"source"}, metrics::latency_buckets());
      overhead_ = &m->histograms("karvon_chat_overhead_seconds",
                                 "karvon's own part of an LLM answer: its "
                                 "time less the LLM call's.",
                                 {}, metrics::latency_buckets())
                       .with({});
    }
  }

  void load(pqxx::connection_base&, const std::string& key) override {
    owner_ = key;
  }

  bool busy() const override { return asks_ > 0; }

  caf::message_handler handlers(caf::event_based_actor* self) override {
    return {
        [this, self](ask_atom, chat_request& req) -> caf::result<chat_reply> {
          auto rp = self->make_response_promise<chat_reply>();
          ++asks_;
          auto started = steady::now();
          if (req.session_id.empty()) {
            // A new session: nothing to read.
            req.session_id = new_session_id();
            keep(req.session_id);
          }
          auto id = req.session_id;
          with_session(id, [this, rp, req = std::move(req),
                            started](const failure* f) mutable {
            if (f) {
              --asks_;
              rp.deliver(make_error(f->code, f->message));
              return;
            }
            answer(std::move(req), rp, started);
          });
          return rp;
        },
    };
  }

private:
  struct session {
    std::int32_t next_turn = 1;
    std::deque<std::pair<std::string, std::string>> recent;
    steady::time_point used = steady::now();
  };

  using reply_promise = caf::typed_response_promise<chat_reply>;

  // Runs `then` once the session is known here: new, kept, or loaded from
  // its turns (and then it must be this user's).
  void with_session(const std::string& id,
                    std::function<void(const failure*)> then) {
    if (auto it = sessions_.find(id); it != sessions_.end()) {
      it->second.used = steady::now();
      return then(nullptr);
    }
    auto& waiting = loading_[id];
    waiting.push_back(std::move(then));
    if (waiting.size() > 1)
      return; // a load is under way
    auto found
        = std::make_shared<std::optional<persistence::chat_session_state>>();
    in_database(
        [id, found](pqxx::connection_base& c) {
          *found = persistence::load_chat_session(c, id, prompt_turns);
        },
        [this, id, found](std::optional<persistence::db_error> err) {
          auto waiters = std::move(loading_[id]);
          loading_.erase(id);
          std::optional<failure> f;
          if (err)
            f = failure_of(*err);
          else if (*found && (*found)->owner != owner_)
            f = failure{errc::not_found, "no such session", {}};
          else {
            auto& s = keep(id);
            if (*found) {
              s.next_turn = (*found)->last_turn + 1;
              for (auto& t : (*found)->recent)
                s.recent.push_back(std::move(t));
            }
          }
          for (auto& w : waiters)
            w(f ? &*f : nullptr);
        });
  }

  session& keep(const std::string& id) {
    if (sessions_.size() >= kept_sessions) {
      auto oldest = std::min_element(
          sessions_.begin(), sessions_.end(),
          [](auto& a, auto& b) { return a.second.used < b.second.used; });
      sessions_.erase(oldest);
    }
    return sessions_[id];
  }

  void answer(chat_request req, reply_promise rp, steady::time_point started) {
    auto& s = sessions_[req.session_id];
    persistence::chat_turn_row turn;
    turn.session_id = req.session_id;
    turn.turn_no = s.next_turn++;
    turn.owner = owner_;
    turn.question = req.question;

    chat_reply r;
    r.session_id = req.session_id;
    r.language = req.language.empty() ? detect_language(req.question, "en")
                                      : req.language;
    auto index = services_.index->current();
    auto hits
        = index->search_documents(req.question, r.language, prompt_passages);
    if (!hits.empty())
      r.confidence
          = std::round(index->confidence(req.question, hits[0]) * 1000) / 1000;
    bool relevant = !hits.empty() && r.confidence >= min_confidence;
    for (auto& h : hits) {
      auto& p = index->passages()[h.passage];
      r.sources.push_back(
          {p.document_id, p.title, std::round(h.score * 1000) / 1000});
    }
    // The best passage: the answer without an LLM, and the fallback.
    std::string best = relevant ? index->passages()[hits[0].passage].text
                                : std::string{no_answer(r.language)};

    if (!services_.llm) {
      r.source = "kb";
      r.answer = std::move(best);
      if (!relevant)
        r.sources.clear();
      return record(std::move(turn), std::move(r), rp, started);
    }

    llm_request ask;
    ask.messages.push_back({"system", system_prompt(r.language, *index, hits)});
    for (auto& [q, a] : s.recent) {
      ask.messages.push_back({"user", q});
      ask.messages.push_back({"assistant", a});
    }
    ask.messages.push_back({"user", req.question});
    ask.priority = llm_interactive;
    auto left = services_.deadline
                - std::chrono::duration_cast<std::chrono::milliseconds>(
                    steady::now() - started);
    ask.budget = std::max(left, std::chrono::milliseconds{1});
    ask.stream_to = req.stream_to;
    ask.stream_id = req.stream_id;
    self()
        ->request(services_.llm, ask.budget, llm_ask_atom::value,
                  std::move(ask))
        .then(
            [this, turn, r, rp, started](llm_result& out) mutable {
              r.source = out.cached ? "cache" : "llm";
              r.answer = std::move(out.text);
              r.llm_ms = std::round(out.llm_ms * 1000) / 1000;
              turn.cache_hit = out.cached;
              turn.prompt_tokens = out.prompt_tokens;
              turn.completion_tokens = out.completion_tokens;
              turn.model = out.model;
              record(std::move(turn), std::move(r), rp, started);
            },
            [this, turn, r, rp, started, best,
             relevant](caf::error& err) mutable {
              auto f = to_failure(err);
              if (f.code == errc::overloaded) {
                // The queue is full: the caller should come back, not
                // read a fallback it did not need.
                --asks_;
                rp.deliver(make_error(
                    errc::overloaded,
                    "the assistant is overloaded; retry in a few seconds"));
                return;
              }
              r.source = "fallback";
              r.answer = std::string{busy_note(r.language)} + "\n\n" + best;
              if (!relevant)
                r.sources.clear();
              record(std::move(turn), std::move(r), rp, started);
            });
  }

  static std::string system_prompt(const std::string& language,
                                   const retrieval_index& index,
                                   const std::vector<retrieval_hit>& hits) {
    std::string p = "You are a shop's support assistant. Answer in ";
    p += language_name(language);
    p += ", briefly and politely, using only the knowledge base passages "
         "below. If they do not answer the question, say so and suggest "
         "contacting support; never invent policies, prices or dates.\n";
    if (hits.empty())
      p += "\nThe knowledge base has nothing on this question.\n";
    for (std::size_t i = 0; i < hits.size(); ++i) {
      auto& passage = index.passages()[hits[i].passage];
      p += "\n[" + std::to_string(i + 1) + "] " + passage.title + "\n"
           + passage.text + "\n";
    }
    return p;
  }

  // Writes the turn, then answers: acknowledged only once committed.
  void record(persistence::chat_turn_row turn, chat_reply r, reply_promise rp,
              steady::time_point started) {
    turn.answer = r.answer;
    turn.language = r.language;
    turn.source = r.source;
    turn.confidence = r.confidence;
    turn.latency_ms = ms_since(started);
    turn.llm_ms = r.llm_ms;
    if (answers_)
      answers_->with({r.source}).observe(turn.latency_ms / 1000);
    if (overhead_ && r.source == "llm")
      overhead_->observe(std::max(0.0, turn.latency_ms - turn.llm_ms) / 1000);
    if (auto it = sessions_.find(turn.session_id); it != sessions_.end()) {
      auto& recent = it->second.recent;
      recent.emplace_back(turn.question, turn.answer);
      while (recent.size() > prompt_turns)
        recent.pop_front();
    }
    auto outcome = std::make_shared<persistence::write_result>();
    auto session_id = turn.session_id;
    auto back = on_own_thread([this, outcome, rp, r, session_id]() mutable {
      --asks_;
      if (outcome->ok() && !outcome->duplicate) {
        rp.deliver(std::move(r));
        return;
      }
      // Someone else wrote this turn: the session is not what this entity
      // thought (another user took the id). Forget it and let them retry.
      sessions_.erase(session_id);
      if (outcome->ok())
        rp.deliver(make_error(errc::conflict,
                              "the session changed meanwhile; ask again"));
      else
        rp.deliver(failure_error(failure_of(*outcome->error)));
    });
    services_.turns->write(
        persistence::to_batch_row(turn),
        [outcome, back](persistence::write_result res) mutable {
          *outcome = std::move(res);
          back();
        });
  }

  static caf::error failure_error(const failure& f) {
    return make_error(f.code, f.message);
  }

  chat_services services_;
  metrics::family<metrics::histogram>* answers_ = nullptr;
  metrics::histogram* overhead_ = nullptr;
  std::string owner_;
  int asks_ = 0;
  std::unordered_map<std::string, session> sessions_;
  std::unordered_map<std::string,
                     std::vector<std::function<void(const failure*)>>>
      loading_;
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

entity_kind user_kind(chat_services services) {
  return {"user", [services](const std::string&) {
            return std::make_unique<user_logic>(services);
          }};
}

void add_chat_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<chat_request>("karvon.chat_request");
  cfg.add_message_type<chat_source>("karvon.chat_source");
  cfg.add_message_type<std::vector<chat_source>>("karvon.chat_sources");
  cfg.add_message_type<chat_reply>("karvon.chat_reply");
}

} // namespace karvon::actors
