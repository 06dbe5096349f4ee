// Flag parsing for the examples: strict number parsing (the whole text must be a number in
// range), choices checked, and every error naming the flag and the value given.
#include "examples/common/flags.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace mantissa::examples {

Flags::Flags(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

void Flags::add(const std::string& name, std::string* value, const std::string& help, std::vector<std::string> choices) {
  flags_.push_back({name, Kind::String, value, help, std::move(choices), *value});
}
void Flags::add(const std::string& name, int64_t* value, const std::string& help) {
  flags_.push_back({name, Kind::Int, value, help, {}, std::to_string(*value)});
}
void Flags::add(const std::string& name, double* value, const std::string& help) {
  std::ostringstream os;
  os << *value;
  flags_.push_back({name, Kind::Double, value, help, {}, os.str()});
}
void Flags::add(const std::string& name, bool* value, const std::string& help) {
  flags_.push_back({name, Kind::Bool, value, help, {}, *value ? "true" : "false"});
}

Flags::Flag* Flags::find(const std::string& name) {
  for (Flag& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}

bool Flags::given(const std::string& name) const {
  for (const Flag& f : flags_)
    if (f.name == name) return f.given;
  return false;
}

void Flags::set(Flag& f, const std::string& text) {
  const std::string what = "--" + f.name + " " + (text.empty() ? "''" : text);
  switch (f.kind) {
    case Kind::String: {
      if (!f.choices.empty()) {
        bool ok = false;
        for (const std::string& c : f.choices) ok = ok || c == text;
        if (!ok) {
          std::string list;
          for (const std::string& c : f.choices) list += (list.empty() ? "" : "|") + c;
          throw FlagError(what + ": expected one of " + list);
        }
      }
      *static_cast<std::string*>(f.target) = text;
      break;
    }
    case Kind::Int: {
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || errno == ERANGE) throw FlagError(what + ": expected an integer");
      *static_cast<int64_t*>(f.target) = v;
      break;
    }
    case Kind::Double: {
      errno = 0;
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || errno == ERANGE) throw FlagError(what + ": expected a number");
      *static_cast<double*>(f.target) = v;
      break;
    }
    case Kind::Bool:
      if (text == "true" || text == "1") *static_cast<bool*>(f.target) = true;
      else if (text == "false" || text == "0") *static_cast<bool*>(f.target) = false;
      else throw FlagError(what + ": expected true or false");
      break;
  }
  f.given = true;
}

bool Flags::parse(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage().c_str(), stdout);
      return false;
    }
    if (arg.rfind("--", 0) != 0) throw FlagError("unexpected argument '" + arg + "' (flags start with --; see --help)");
    arg = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    Flag* f = find(arg);
    if (f == nullptr) throw FlagError("unknown flag --" + arg + " (see --help)");
    if (!has_value) {
      if (f->kind == Kind::Bool) {
        value = "true";
      } else {
        if (i + 1 >= argc) throw FlagError("--" + arg + " needs a value");
        value = argv[++i];
      }
    }
    set(*f, value);
  }
  return true;
}

std::string Flags::usage() const {
  std::ostringstream os;
  os << "usage: " << program_ << " [flags]\n" << summary_ << "\n\nflags:\n";
  for (const Flag& f : flags_) {
    // Built with a stream: GCC 12 warns (-Wrestrict, falsely) on "literal" + std::string here.
    std::ostringstream left;
    left << "  --" << f.name;
    if (f.kind != Kind::Bool) {
      left << ' ';
      if (f.choices.empty()) left << (f.kind == Kind::String ? "TEXT" : "N");
      for (size_t i = 0; i < f.choices.size(); ++i) left << (i ? "|" : "") << f.choices[i];
    }
    const std::string l = left.str();
    os << l << std::string(l.size() < 32 ? 32 - l.size() : 1, ' ') << f.help;
    if (!f.default_text.empty()) os << " (default " << f.default_text << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace mantissa::examples
