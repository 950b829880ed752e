/*
** chat.c — the prompt an instruction-tuned model expects for a conversation,
** from its chat template (tokenizer.chat_template). The template is not run
** (it is Jinja); it is recognised by its text, as llama.cpp recognises it
** (llm_chat_detect_template), and the conversation is laid out in that
** format: ChatML (Qwen), Llama 3, Phi-3, Mistral v1 / v3 / v3-tekken / v7,
** Llama 2 [INST] (with or without <<SYS>>, BOS inside the history, stripped
** messages), Gemma and Zephyr. The BOS token is not written: the tokenizer
** adds it.
*/
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  T_CHATML, T_LLAMA3, T_PHI3, T_MISTRAL_V1, T_MISTRAL_V3, T_MISTRAL_V3_TEKKEN, T_MISTRAL_V7, T_LLAMA2, T_LLAMA2_SYS,
  T_LLAMA2_SYS_BOS, T_LLAMA2_SYS_STRIP, T_GEMMA, T_ZEPHYR, T_COUNT
};
static const char *g_names[T_COUNT] = {"chatml", "llama3", "phi3", "mistral-v1", "mistral-v3", "mistral-v3-tekken",
                                       "mistral-v7", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip",
                                       "gemma", "zephyr"};

const char *pf_chat_template_names(void) {
  return "chatml, llama3, phi3, mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, llama2, llama2-sys, "
         "llama2-sys-bos, llama2-sys-strip, gemma, zephyr";
}

static int has(const char *t, size_t n, const char *s) {
  size_t k = strlen(s);
  for (size_t i = 0; i + k <= n; i++) if (!memcmp(t + i, s, k)) return 1;
  return 0;
}

/* the format of a template's text, or -1 */
static int detect(const char *t, size_t n) {
  for (int i = 0; i < T_COUNT; i++) if (strlen(g_names[i]) == n && !memcmp(t, g_names[i], n)) return i;
  if (has(t, n, "<|im_start|>")) return has(t, n, "<|im_sep|>") || has(t, n, "<end_of_utterance>") ? -1 : T_CHATML;
  if ((n >= 7 && !memcmp(t, "mistral", 7)) || has(t, n, "[INST]")) {
    if (has(t, n, "[SYSTEM_PROMPT]")) return T_MISTRAL_V7;
    if (has(t, n, "' [INST] ' + system_message") || has(t, n, "[AVAILABLE_TOOLS]"))
      return has(t, n, " [INST]") ? T_MISTRAL_V1 : has(t, n, "\"[INST]\"") ? T_MISTRAL_V3_TEKKEN : T_MISTRAL_V3;
    if (has(t, n, "content.strip()")) return T_LLAMA2_SYS_STRIP;
    if (has(t, n, "bos_token + '[INST]")) return T_LLAMA2_SYS_BOS;
    return has(t, n, "<<SYS>>") ? T_LLAMA2_SYS : T_LLAMA2;
  }
  if (has(t, n, "<|assistant|>") && has(t, n, "<|end|>")) return T_PHI3;
  if (has(t, n, "<|user|>") && has(t, n, "<|endoftext|>")) return T_ZEPHYR;
  if (has(t, n, "<start_of_turn>")) return T_GEMMA;
  if (has(t, n, "<|start_header_id|>") && has(t, n, "<|end_header_id|>")) return T_LLAMA3;
  return -1;
}

typedef struct sb { char *p; size_t n, cap; int oom; } sb;
static void put(sb *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t c = (b->n + n + 1) * 2;
    char *q = realloc(b->p, c);
    if (!q) { b->oom = 1; return; }
    b->p = q, b->cap = c;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void puts_(sb *b, const char *s) { put(b, s, strlen(s)); }
/* s without leading and trailing white space (as llama.cpp's trim: isspace) */
static void put_trim(sb *b, const char *s, size_t n) {
  while (n && isspace((unsigned char)s[0])) s++, n--;
  while (n && isspace((unsigned char)s[n - 1])) n--;
  put(b, s, n);
}
static int role_is(const pf_chat_msg *m, const char *r) { return m->role_len == strlen(r) && !memcmp(m->role, r, m->role_len); }

/* The template: the one named, else the one the model's tokenizer.chat_template is recognised as. */
static int choose_template(const pf_model *m, const char *name, int *t, pf_err *err) {
  if (name) {
    *t = -1;
    for (int i = 0; i < T_COUNT; i++) if (!strcmp(name, g_names[i])) *t = i;
    if (*t < 0) return pf_seterr(err, PF_ERR, "chat template '%s' is not one of: %s", name, pf_chat_template_names());
    return PF_OK;
  }
  const gguf_kv *kv = gguf_find(&m->g, "tokenizer.chat_template");
  if (!kv || kv->type != GGUF_T_STRING)
    return pf_seterr(err, PF_ERR, "the model has no chat template (tokenizer.chat_template); name one with the option "
                                  "\"template\" (%s)", pf_chat_template_names());
  *t = detect(kv->v.s.p, (size_t)kv->v.s.n);
  if (*t < 0)
    return pf_seterr(err, PF_ERR, "the model's chat template is not one this engine recognises (it recognises %s); "
                                  "name one with the option \"template\"", pf_chat_template_names());
  return PF_OK;
}

/* Formats where every message is a header naming its role, the content and an end tag: ChatML, Llama 3,
** Phi-3, Zephyr. */
static void fmt_tagged(sb *b, int t, const pf_chat_msg *msgs, int n, int add_ass) {
  for (int i = 0; i < n; i++) {
    const pf_chat_msg *mm = &msgs[i];
    if (t == T_CHATML) {
      puts_(b, "<|im_start|>"), put(b, mm->role, mm->role_len), puts_(b, "\n");
      put(b, mm->content, mm->content_len), puts_(b, "<|im_end|>\n");
    } else if (t == T_LLAMA3) {
      puts_(b, "<|start_header_id|>"), put(b, mm->role, mm->role_len), puts_(b, "<|end_header_id|>\n\n");
      put_trim(b, mm->content, mm->content_len), puts_(b, "<|eot_id|>");
    } else {
      puts_(b, "<|"), put(b, mm->role, mm->role_len), puts_(b, "|>\n");
      put(b, mm->content, mm->content_len), puts_(b, t == T_PHI3 ? "<|end|>\n" : "<|endoftext|>\n");
    }
  }
  if (!add_ass) return;
  puts_(b, t == T_CHATML ? "<|im_start|>assistant\n" : t == T_LLAMA3 ? "<|start_header_id|>assistant<|end_header_id|>\n\n"
                                                                     : "<|assistant|>\n");
}

/* Mistral's [INST] formats: v7 (system prompts of their own), v1, v3 and v3-tekken (spacing differs). */
static void fmt_mistral(sb *b, int t, const pf_chat_msg *msgs, int n) {
  if (t == T_MISTRAL_V7) {
    for (int i = 0; i < n; i++) {
      if (role_is(&msgs[i], "system")) puts_(b, "[SYSTEM_PROMPT] "), put(b, msgs[i].content, msgs[i].content_len), puts_(b, "[/SYSTEM_PROMPT]");
      else if (role_is(&msgs[i], "user")) puts_(b, "[INST] "), put(b, msgs[i].content, msgs[i].content_len), puts_(b, "[/INST]");
      else puts_(b, " "), put(b, msgs[i].content, msgs[i].content_len), puts_(b, "</s>");
    }
    return;
  }
  const char *lead = t == T_MISTRAL_V1 ? " " : "", *trail = t == T_MISTRAL_V3_TEKKEN ? "" : " ";
  int inside = 0;
  for (int i = 0; i < n; i++) {
    if (!inside) puts_(b, lead), puts_(b, "[INST]"), puts_(b, trail), inside = 1;
    if (role_is(&msgs[i], "system")) put(b, msgs[i].content, msgs[i].content_len), puts_(b, "\n\n");
    else if (role_is(&msgs[i], "user")) put(b, msgs[i].content, msgs[i].content_len), puts_(b, lead), puts_(b, "[/INST]");
    else {
      puts_(b, trail);
      if (t == T_MISTRAL_V3) put_trim(b, msgs[i].content, msgs[i].content_len);
      else put(b, msgs[i].content, msgs[i].content_len);
      puts_(b, "</s>");
      inside = 0;
    }
  }
}

/* Llama 2's formats: without a system block, with <<SYS>>, with BOS inside, with contents trimmed. */
static void fmt_llama2(sb *b, int t, const pf_chat_msg *msgs, int n) {
  int sys = t != T_LLAMA2, bos_inside = t == T_LLAMA2_SYS_BOS, strip = t == T_LLAMA2_SYS_STRIP, inside = 1;
  puts_(b, "[INST] ");
  for (int i = 0; i < n; i++) {
    if (!inside) inside = 1, puts_(b, bos_inside ? "<s>[INST] " : "[INST] ");
    const pf_chat_msg *mm = &msgs[i];
    int is_sys = role_is(mm, "system"), is_user = role_is(mm, "user");
    if (is_sys && sys) puts_(b, "<<SYS>>\n");
    if (strip) put_trim(b, mm->content, mm->content_len);
    else put(b, mm->content, mm->content_len);
    if (is_sys) puts_(b, sys ? "\n<</SYS>>\n\n" : "\n");
    else if (is_user) puts_(b, " [/INST]");
    else puts_(b, "</s>"), inside = 0;
  }
}

/* Gemma: no system role (its text opens the next user turn), the assistant is "model". */
static void fmt_gemma(sb *b, const pf_chat_msg *msgs, int n, int add_ass) {
  sb sys = {0};
  for (int i = 0; i < n; i++) {
    if (role_is(&msgs[i], "system")) { put_trim(&sys, msgs[i].content, msgs[i].content_len); continue; }
    int model = role_is(&msgs[i], "assistant");
    puts_(b, "<start_of_turn>");
    if (model) puts_(b, "model");
    else put(b, msgs[i].role, msgs[i].role_len);
    puts_(b, "\n");
    if (sys.n && !model) put(b, sys.p, sys.n), puts_(b, "\n\n"), sys.n = 0;
    put_trim(b, msgs[i].content, msgs[i].content_len), puts_(b, "<end_of_turn>\n");
  }
  if (sys.oom) b->oom = 1;
  free(sys.p);
  if (add_ass) puts_(b, "<start_of_turn>model\n");
}

int pf_chat_format(const pf_model *m, const char *name, const pf_chat_msg *msgs, int n, int add_ass, char **out,
                   size_t *out_len, pf_err *err) {
  int t = -1, rc;
  *out = NULL;
  if ((rc = choose_template(m, name, &t, err))) return rc;
  sb b = {0};
  switch (t) {
    case T_CHATML:
    case T_LLAMA3:
    case T_PHI3:
    case T_ZEPHYR: fmt_tagged(&b, t, msgs, n, add_ass); break;
    case T_MISTRAL_V7:
    case T_MISTRAL_V1:
    case T_MISTRAL_V3:
    case T_MISTRAL_V3_TEKKEN: fmt_mistral(&b, t, msgs, n); break;
    case T_LLAMA2:
    case T_LLAMA2_SYS:
    case T_LLAMA2_SYS_BOS:
    case T_LLAMA2_SYS_STRIP: fmt_llama2(&b, t, msgs, n); break;
    case T_GEMMA: fmt_gemma(&b, msgs, n, add_ass); break;
  }
  if (b.oom || !b.p) {
    if (b.oom) { free(b.p); return pf_seterr(err, PF_NOMEM, "out of memory formatting the conversation"); }
    b.p = calloc(1, 1);
    if (!b.p) return pf_seterr(err, PF_NOMEM, "out of memory");
  }
  *out = b.p;
  *out_len = b.n;
  return PF_OK;
}
