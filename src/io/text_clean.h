/* text_clean.h — the prompt cleaning the Wan tokenizer applies before SentencePiece (clean='whitespace'). */
#ifndef SF_TEXT_CLEAN_H
#define SF_TEXT_CLEAN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct { const char *name; const char *value; } sf_html_entity;
typedef struct { unsigned code; const char *value; } sf_html_charref_fix;
extern const sf_html_entity sf_html_entities[];       /* sorted by name (bytewise) */
extern const int sf_html_entities_count;
extern const sf_html_charref_fix sf_html_invalid_charrefs[];
extern const int sf_html_invalid_charrefs_count;
extern const unsigned sf_html_invalid_codepoints[];
extern const int sf_html_invalid_codepoints_count;

/* Python's html.unescape on UTF-8 text; returns a malloc'ed string (NULL + sf_error on bad UTF-8) */
char *sf_html_unescape(const char *s);
/* the ftfy.fix_text steps that are not covered by SentencePiece's own NFKC normalizer: curly quotes
 * to straight ones (uncurl_quotes) and line-break unification; malloc'ed */
char *sf_ftfy_subset(const char *s);
/* whitespace_clean(basic_clean(text)) of Wan's tokenizers.py: ftfy subset, html.unescape twice,
 * strip, collapse every run of Unicode whitespace to one space, strip. malloc'ed */
char *sf_text_clean_whitespace(const char *s);

#ifdef __cplusplus
}
#endif
#endif
