/* spm_tokenizer.h — a C view of libsentencepiece (spm_tokenizer.cc): load a .model, text <-> ids. */
#ifndef SF_SPM_TOKENIZER_H
#define SF_SPM_TOKENIZER_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sf_spm sf_spm;

sf_spm *sf_spm_load(const char *model_path);           /* NULL + sf_error naming the file */
void sf_spm_free(sf_spm *sp);
/* ids of `text` (no special tokens); *ids is malloc'ed; returns the count or -1 */
int sf_spm_encode(sf_spm *sp, const char *text, int **ids);
/* pieces as one malloc'ed string, separated by '\n' (for inspection) */
char *sf_spm_encode_pieces(sf_spm *sp, const char *text);
char *sf_spm_decode(sf_spm *sp, const int *ids, int n); /* malloc'ed */
int sf_spm_piece_to_id(sf_spm *sp, const char *piece);  /* unk id when absent */
int sf_spm_vocab_size(sf_spm *sp);
int sf_spm_unk_id(sf_spm *sp);
int sf_spm_pad_id(sf_spm *sp);                          /* -1 when the model has none */
int sf_spm_eos_id(sf_spm *sp);

#ifdef __cplusplus
}
#endif
#endif
