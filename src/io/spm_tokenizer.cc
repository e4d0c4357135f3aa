// spm_tokenizer.cc — extern "C" shim over libsentencepiece's C++ API (the library has no C API).
#include "io/spm_tokenizer.h"

#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "core/error.h"

struct sf_spm {
  sentencepiece::SentencePieceProcessor proc;
};

static char *dup_string(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (!p) { sf_error("tokenizer: out of memory"); return nullptr; }
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = 0;
  return p;
}

extern "C" sf_spm *sf_spm_load(const char *path) {
  sf_spm *sp = new (std::nothrow) sf_spm;
  if (!sp) { sf_error("tokenizer: out of memory"); return nullptr; }
  auto st = sp->proc.Load(path);
  if (!st.ok()) {
    sf_error("tokenizer: cannot load SentencePiece model '%s': %s", path, st.ToString().c_str());
    delete sp;
    return nullptr;
  }
  return sp;
}

extern "C" void sf_spm_free(sf_spm *sp) { delete sp; }

extern "C" int sf_spm_encode(sf_spm *sp, const char *text, int **ids) {
  std::vector<int> v;
  auto st = sp->proc.Encode(text, &v);
  if (!st.ok()) return sf_error("tokenizer: encode failed: %s", st.ToString().c_str());
  *ids = static_cast<int *>(std::malloc((v.size() + 1) * sizeof(int)));
  if (!*ids) return sf_error("tokenizer: out of memory");
  if (!v.empty()) std::memcpy(*ids, v.data(), v.size() * sizeof(int));
  return static_cast<int>(v.size());
}

extern "C" char *sf_spm_encode_pieces(sf_spm *sp, const char *text) {
  std::vector<std::string> v;
  auto st = sp->proc.Encode(text, &v);
  if (!st.ok()) { sf_error("tokenizer: encode failed: %s", st.ToString().c_str()); return nullptr; }
  std::string all;
  for (size_t i = 0; i < v.size(); i++) { if (i) all += '\n'; all += v[i]; }
  return dup_string(all);
}

extern "C" char *sf_spm_decode(sf_spm *sp, const int *ids, int n) {
  std::vector<int> v(ids, ids + n);
  for (int id : v)
    if (id < 0 || id >= sp->proc.GetPieceSize()) {
      sf_error("tokenizer: id %d outside the vocabulary (size %d)", id, sp->proc.GetPieceSize());
      return nullptr;
    }
  std::string out;
  auto st = sp->proc.Decode(v, &out);
  if (!st.ok()) { sf_error("tokenizer: decode failed: %s", st.ToString().c_str()); return nullptr; }
  return dup_string(out);
}

extern "C" int sf_spm_piece_to_id(sf_spm *sp, const char *piece) { return sp->proc.PieceToId(piece); }
extern "C" int sf_spm_vocab_size(sf_spm *sp) { return sp->proc.GetPieceSize(); }
extern "C" int sf_spm_unk_id(sf_spm *sp) { return sp->proc.unk_id(); }
extern "C" int sf_spm_pad_id(sf_spm *sp) { return sp->proc.pad_id(); }
extern "C" int sf_spm_eos_id(sf_spm *sp) { return sp->proc.eos_id(); }
