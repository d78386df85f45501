#include "mil/io/csv.hpp"

#include "mil/io/files.hpp"
#include "mil/util/error.hpp"

namespace mil::io {
namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

}  // namespace

int CsvTable::column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return static_cast<int>(i);
  }
  return -1;
}

size_t CsvTable::require_column(const std::string& name) const {
  const int c = column(name);
  if (c >= 0) return static_cast<size_t>(c);
  std::string have;
  for (const auto& h : header) have += (have.empty() ? "" : ", ") + h;
  throw Error(path, name, "missing column (the header has: " + have + ")");
}

std::string csv_field(const std::string& value) {
  const bool padded =
      !value.empty() && (value.front() == ' ' || value.front() == '\t' || value.back() == ' ' || value.back() == '\t');
  if (!padded && value.find_first_of(",\"\r\n") == std::string::npos) return value;
  std::string out = "\"";
  for (const char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

CsvTable read_csv(const std::string& path) {
  std::string text = read_file(path);
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);

  CsvTable table;
  table.path = path;
  std::vector<std::string> record;
  std::string field;
  bool in_quotes = false;
  bool field_was_quoted = false;
  size_t line = 1;
  size_t record_line = 1;

  auto end_field = [&] {
    record.push_back(field_was_quoted ? field : trim(field));
    field.clear();
    field_was_quoted = false;
  };
  auto end_record = [&] {
    end_field();
    const bool blank = record.size() == 1 && record[0].empty();
    if (!blank) {
      if (table.header.empty()) {
        table.header = std::move(record);
      } else {
        if (record.size() != table.header.size()) {
          throw Error(
              path, "line " + std::to_string(record_line),
              std::to_string(record.size()) + " fields, but the header has " + std::to_string(table.header.size()));
        }
        table.rows.push_back(std::move(record));
        table.line_numbers.push_back(record_line);
      }
    }
    record.clear();
    record_line = line;
  };

  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        in_quotes = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (field_was_quoted && (c == ' ' || c == '\t')) {
      continue;  // padding after the closing quote is not part of the value
    } else if (field_was_quoted && c != ',' && c != '\n' && c != '\r') {
      throw Error(path, "line " + std::to_string(line), "text after a quoted field");
    } else if (c == '"' && trim(field).empty()) {
      in_quotes = true;
      field_was_quoted = true;
      field.clear();
    } else if (c == ',') {
      end_field();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++line;
      end_record();
    } else {
      field += c;
    }
  }
  if (in_quotes) throw Error(path, "line " + std::to_string(record_line), "unterminated quoted field");
  if (!field.empty() || !record.empty()) end_record();
  if (table.header.empty()) throw Error(path, "", "empty CSV file (no header)");
  return table;
}

}  // namespace mil::io
