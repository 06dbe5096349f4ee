// Command-line flags for the example programs: declare each flag with its default and help
// text, then parse(argc, argv) accepts "--name value" and "--name=value", prints usage for
// --help, and throws FlagError naming the flag for unknown flags and malformed values.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mantissa::examples {

struct FlagError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Flags {
 public:
  // `program` and `summary` head the usage text.
  Flags(std::string program, std::string summary);

  // The pointed-to variable holds the default and receives the parsed value; it must outlive
  // parse(). `choices` (strings only) restricts the accepted values.
  void add(const std::string& name, std::string* value, const std::string& help,
           std::vector<std::string> choices = {});
  void add(const std::string& name, int64_t* value, const std::string& help);
  void add(const std::string& name, double* value, const std::string& help);
  // A bool flag takes no value ("--flag"), or an explicit "--flag=true|false".
  void add(const std::string& name, bool* value, const std::string& help);

  // Returns false when --help was given (usage already printed to stdout).
  bool parse(int argc, const char* const* argv);
  // Whether the flag appeared on the command line (as opposed to keeping its default).
  bool given(const std::string& name) const;
  std::string usage() const;

 private:
  enum class Kind { String, Int, Double, Bool };
  struct Flag {
    std::string name;
    Kind kind;
    void* target;
    std::string help;
    std::vector<std::string> choices;
    std::string default_text;
    bool given = false;
  };
  Flag* find(const std::string& name);
  void set(Flag& flag, const std::string& text);

  std::string program_, summary_;
  std::vector<Flag> flags_;
};

}  // namespace mantissa::examples
