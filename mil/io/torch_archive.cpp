#include "mil/io/torch_archive.hpp"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "mil/io/files.hpp"
#include "mil/util/error.hpp"

namespace mil::io {
namespace {

// --- Pickle rewriting -----------------------------------------------------------------------------
// libtorch's Unpickler knows `collections.OrderedDict` only as the (always empty) backward-hook slot
// of a tensor and turns it into None, so the OrderedDict that `torch.save(model.state_dict())` writes
// at the top level cannot be loaded (SETITEMS on None); nor does it know SETITEM, which the dict's
// `_metadata` attribute uses. Before handing the stream over we rewrite it:
//   * every `OrderedDict()` call (the class, EMPTY_TUPLE, REDUCE) becomes EMPTY_DICT;
//   * BUILD and its state argument (only the `_metadata` attribute here) are dropped.
// To know where an argument began, we track the output offset of each item on the pickle stack.

enum class ArgKind { kNone, kFixed, kLine, kTwoLines, kLen1, kLen4, kLen8 };
struct OpArg {
  ArgKind kind;
  size_t size;  // bytes for kFixed
};

// Argument layout of every opcode of pickle protocols 0-5.
bool op_arg(uint8_t op, OpArg* arg) {
  switch (op) {
    case '(':
    case '.':
    case '0':
    case '1':
    case '2':
    case 'N':
    case 'Q':
    case 'R':
    case 'a':
    case 'b':
    case 'd':
    case '}':
    case 'e':
    case 'l':
    case ']':
    case 'o':
    case 's':
    case 't':
    case ')':
    case 'u':
    case 0x81:
    case 0x85:
    case 0x86:
    case 0x87:
    case 0x88:
    case 0x89:
    case 0x8f:
    case 0x90:
    case 0x91:
    case 0x92:
    case 0x93:
    case 0x94:
    case 0x97:
    case 0x98:
      *arg = {ArgKind::kNone, 0};
      return true;
    case 'K':
    case 'h':
    case 'q':
    case 0x80:
    case 0x82:
      *arg = {ArgKind::kFixed, 1};
      return true;
    case 'M':
    case 0x83:
      *arg = {ArgKind::kFixed, 2};
      return true;
    case 'J':
    case 'j':
    case 'r':
    case 0x84:
      *arg = {ArgKind::kFixed, 4};
      return true;
    case 'G':
    case 0x95:
      *arg = {ArgKind::kFixed, 8};
      return true;
    case 'I':
    case 'L':
    case 'S':
    case 'V':
    case 'F':
    case 'P':
    case 'g':
    case 'p':
      *arg = {ArgKind::kLine, 0};
      return true;
    case 'c':
    case 'i':
      *arg = {ArgKind::kTwoLines, 0};
      return true;
    case 0x8a:
    case 'U':
    case 0x8c:
    case 'C':
      *arg = {ArgKind::kLen1, 0};
      return true;
    case 0x8b:
    case 'T':
    case 'X':
    case 'B':
      *arg = {ArgKind::kLen4, 0};
      return true;
    case 0x8d:
    case 0x8e:
    case 0x96:
      *arg = {ArgKind::kLen8, 0};
      return true;
    default:
      return false;
  }
}

uint64_t read_le(const std::string& s, size_t pos, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[pos + i])) << (8 * i);
  return v;
}

struct Op {
  uint8_t code;
  size_t begin;  // of the opcode byte
  size_t arg;    // first argument byte
  size_t end;    // one past the last byte
};

class OpReader {
 public:
  OpReader(const std::string& pickle, const std::string& file) : p_(pickle), file_(file) {}
  bool done() const { return pos_ >= p_.size(); }

  Op next() {
    Op op{static_cast<uint8_t>(p_[pos_]), pos_, pos_ + 1, 0};
    OpArg arg{};
    if (!op_arg(op.code, &arg)) fail("unknown pickle opcode " + std::to_string(op.code));
    size_t end = op.arg;
    switch (arg.kind) {
      case ArgKind::kNone:
        break;
      case ArgKind::kFixed:
        end += arg.size;
        break;
      case ArgKind::kLine:
        end = line_end(end);
        break;
      case ArgKind::kTwoLines:
        end = line_end(line_end(end));
        break;
      case ArgKind::kLen1:
        end += 1 + length_at(end, 1);
        break;
      case ArgKind::kLen4:
        end += 4 + length_at(end, 4);
        break;
      case ArgKind::kLen8:
        end += 8 + length_at(end, 8);
        break;
    }
    if (end > p_.size()) fail("truncated pickle");
    op.end = end;
    pos_ = end;
    return op;
  }

  uint64_t memo_index(const Op& op) const {
    if (op.code == 'h' || op.code == 'q') return read_le(p_, op.arg, 1);
    if (op.code == 'j' || op.code == 'r') return read_le(p_, op.arg, 4);
    // GET / PUT: a decimal line (std::stoull would throw std::invalid_argument past our error handling).
    uint64_t index = 0;
    const char* first = p_.data() + op.arg;
    const char* last = p_.data() + op.end - 1;
    const auto [end, ec] = std::from_chars(first, last, index);
    if (ec != std::errc() || end != last) fail("memo index '" + std::string(first, last) + "' is not a number");
    return index;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw Error(file_, "data.pkl", why + " at byte " + std::to_string(pos_));
  }

 private:
  size_t line_end(size_t from) const {
    size_t nl = p_.find('\n', from);
    if (nl == std::string::npos) fail("truncated pickle");
    return nl + 1;
  }
  // Length prefix of n bytes at `at`.
  uint64_t length_at(size_t at, size_t n) const {
    if (at + n > p_.size()) fail("truncated pickle");
    const uint64_t len = read_le(p_, at, n);
    if (len > p_.size()) fail("truncated pickle");
    return len;
  }

  const std::string& p_;
  const std::string& file_;
  size_t pos_ = 0;
};

bool is_memo_get(uint8_t c) {
  return c == 'h' || c == 'j' || c == 'g';
}
bool is_memo_put(uint8_t c) {
  return c == 'q' || c == 'r' || c == 'p';
}

// How an opcode changes the stack: pops `pop` items (or everything above the topmost mark when
// `to_mark`), then pushes `push` items.
struct StackEffect {
  bool to_mark;
  int pop;
  int push;
};

StackEffect stack_effect(uint8_t op) {
  switch (op) {
    case '0':
      return {false, 1, 0};  // POP
    case '2':
      return {false, 0, 1};  // DUP
    case '1':
    case 'e':
    case 'u':
    case 0x90:
      return {true, 0, 0};  // POP_MARK APPENDS SETITEMS ADDITEMS
    case 't':
    case 'l':
    case 'd':
    case 0x91:
    case 'i':
    case 'o':
      return {true, 0, 1};  // TUPLE LIST DICT ...
    case 0x85:
      return {false, 1, 1};  // TUPLE1
    case 0x86:
      return {false, 2, 1};  // TUPLE2
    case 0x87:
      return {false, 3, 1};  // TUPLE3
    case 'a':
      return {false, 1, 0};  // APPEND
    case 's':
      return {false, 2, 0};  // SETITEM
    case 'b':
      return {false, 1, 0};  // BUILD
    case 'Q':
      return {false, 1, 1};  // BINPERSID
    case 'R':
    case 0x81:
    case 0x93:
      return {false, 2, 1};  // REDUCE NEWOBJ STACK_GLOBAL
    case 0x92:
      return {false, 3, 1};  // NEWOBJ_EX
    case '(':
    case '.':
    case 0x80:
    case 0x95:
    case 0x94:
      return {false, 0, 0};  // MARK STOP PROTO FRAME MEMOIZE
    default:
      if (is_memo_put(op)) return {false, 0, 0};
      return {false, 0, 1};  // every other opcode pushes one value
  }
}

struct StackItem {
  size_t out_start;         // where the bytes producing this item begin in the output
  bool ordered_dict_class;  // the `collections.OrderedDict` class itself
  bool empty_tuple;
};

std::string plain_dicts_for_ordered_dicts(const std::string& pickle, const std::string& file) {
  static const std::string kOrderedDict = "collections\nOrderedDict\n";
  std::string out;
  out.reserve(pickle.size());
  std::vector<StackItem> stack;
  std::vector<size_t> marks;                      // stack sizes at each MARK
  std::vector<size_t> mark_starts;                // output offsets of each MARK
  std::map<uint64_t, bool> memo_is_ordered_dict;  // memo slot -> holds the OrderedDict class
  OpReader reader(pickle, file);
  while (!reader.done()) {
    const Op op = reader.next();
    const size_t op_start = out.size();
    out.append(pickle, op.begin, op.end - op.begin);
    if (op.code == '(') {
      marks.push_back(stack.size());
      mark_starts.push_back(op_start);
      continue;
    }
    if (is_memo_put(op.code)) {
      if (stack.empty()) reader.fail("memo put on an empty stack");
      memo_is_ordered_dict[reader.memo_index(op)] = stack.back().ordered_dict_class;
      continue;
    }
    const StackEffect effect = stack_effect(op.code);
    size_t first_start = op_start;  // output offset where the items this opcode consumes began
    if (effect.to_mark) {
      if (marks.empty()) reader.fail("no MARK on the stack");
      stack.resize(marks.back());
      first_start = mark_starts.back();
      marks.pop_back();
      mark_starts.pop_back();
    } else if (effect.pop > 0) {
      if (stack.size() < static_cast<size_t>(effect.pop)) reader.fail("stack underflow");
      first_start = stack[stack.size() - effect.pop].out_start;
      const StackItem top = stack.back();
      const StackItem below = stack.size() >= 2 ? stack[stack.size() - 2] : StackItem{};
      if (op.code == 'R' && below.ordered_dict_class && top.empty_tuple) {
        out.resize(below.out_start);  // OrderedDict() -> {}
        out.push_back('}');
        stack.resize(stack.size() - 2);
        stack.push_back({below.out_start, false, false});
        continue;
      }
      if (op.code == 'b') {
        out.resize(top.out_start);  // drop BUILD and its state argument
        stack.pop_back();
        continue;
      }
      stack.resize(stack.size() - effect.pop);
    }
    for (int i = 0; i < effect.push; ++i) {
      StackItem item{first_start, false, op.code == ')'};
      if (op.code == 'c') item.ordered_dict_class = pickle.compare(op.arg, op.end - op.arg, kOrderedDict) == 0;
      if (is_memo_get(op.code)) {
        auto it = memo_is_ordered_dict.find(reader.memo_index(op));
        item.ordered_dict_class = it != memo_is_ordered_dict.end() && it->second;
      }
      stack.push_back(item);
    }
  }
  return out;
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

}  // namespace

c10::IValue read_torch_archive(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(path, "", "no such file");

  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> archive;
  try {
    archive = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    throw Error(path, "", "not a PyTorch zip archive (torch.save format): " + first_line(e.what()));
  }
  std::string pickle;
  try {
    if (!archive->hasRecord("data.pkl")) {
      throw Error(path, "data.pkl", "missing: this archive was not written by torch.save");
    }
    auto [pickle_ptr, pickle_size] = archive->getRecord("data.pkl");
    pickle = plain_dicts_for_ordered_dicts(std::string(static_cast<const char*>(pickle_ptr.get()), pickle_size), path);
  } catch (const c10::Error& e) {  // a corrupt zip directory or record
    throw Error(path, "data.pkl", "unreadable: " + first_line(e.what()));
  }

  size_t offset = 0;
  auto read_bytes = [&](char* buf, size_t n) {
    n = std::min(n, pickle.size() - offset);
    std::memcpy(buf, pickle.data() + offset, n);
    offset += n;
    return n;
  };
  auto read_record = [&](const std::string& name) {
    const std::string record = "data/" + name;
    if (!archive->hasRecord(record)) throw Error(path, record, "tensor data missing from the archive");
    return std::get<0>(archive->getRecord(record));
  };
  try {
    torch::jit::Unpickler unpickler(read_bytes, nullptr, nullptr, read_record, at::Device(at::kCPU));
    return unpickler.parse_ivalue();
  } catch (const Error&) {
    throw;  // read_record's
  } catch (const std::exception& e) {
    // c10::Error, and on a corrupt stream also std::out_of_range from the unpickler's memo table (a bad GET)
    // or miniz's record errors: all mean the same to the user.
    throw Error(path, "data.pkl", "cannot unpickle: " + first_line(e.what()));
  }
}

void write_torch_archive(const std::string& path, const c10::IValue& value) {
  // torch::pickle_save's archive, less its type tags: it wraps every dict in
  // torch.jit._pickle.restore_type_tag(dict, "Dict[str, Tensor]"), a call that torch.load(weights_only=True),
  // PyTorch's default since 2.6, refuses to make. A plain dict is what torch.save writes for a state dict.
  std::vector<char> pickle;
  torch::jit::Pickler pickler([&](const char* buf, size_t n) { pickle.insert(pickle.end(), buf, buf + n); }, nullptr,
                              nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(value);
  pickler.stop();
  std::string bytes;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) {
    bytes.append(static_cast<const char*>(buf), n);
    return n;
  });
  torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();
  write_file_atomically(path, bytes);
}

}  // namespace mil::io
