#pragma once
// A minimal RFC 4180 reader for the small tables users hand us (labels, splits): quoted fields,
// doubled quotes, CRLF line ends and a UTF-8 BOM (Excel writes one) are handled.
#include <string>
#include <vector>

namespace mil::io {

struct CsvTable {
  std::string path;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // each exactly header.size() fields
  std::vector<size_t> line_numbers;            // 1-based source line of each row, for messages

  // Index of a column by name; -1 when absent.
  int column(const std::string& name) const;
  // Like column(), but throws mil::Error naming the file, the column and the columns that are there.
  size_t require_column(const std::string& name) const;
};

// Throws mil::Error naming the file on a missing/unreadable file, an empty file, an unterminated quote,
// text after a closing quote, or a row whose field count differs from the header's. Blank lines are skipped.
CsvTable read_csv(const std::string& path);

// One field as RFC 4180 writes it: quoted when it holds a comma, a double quote, CR or LF (or starts or ends
// with a space or tab, which read_csv trims from unquoted fields), with quotes doubled; otherwise as is.
// Every CSV the project writes goes through it, so a slide id like `slide,7` stays one field.
std::string csv_field(const std::string& value);

}  // namespace mil::io
