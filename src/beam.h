/* Beam search: instead of choosing one token per step, keep the B most probable partial
 * texts ("beams") and extend each by its likeliest tokens; of all extensions, the B with the
 * highest total log-probability go on. A beam that emits the end-of-text token is set
 * aside as a finished hypothesis, scored
 *     score = (sum of its tokens' log-probabilities, EOS's included) / length^alpha
 * with length the tokens before EOS and alpha the length penalty: alpha = 0 ranks by plain
 * probability (which favours short texts, every token costing probability), alpha = 1 by
 * the mean per token. The search ends when no open beam can still beat the finished ones,
 * or after max_tokens (the open beams then finish as they are).
 *
 * A token that completes a stop string ends its beam the same way: the hypothesis is the
 * text before the stop string, scored with the tokens up to the one that completed it (a
 * full context ends the search too, after one more token from the last logits, with
 * finish "context").
 *
 * Log-probabilities are those of the sampler's chain without its truncating filters:
 * logit bias, bad words and penalties apply (each beam has its own history), top-k, top-p
 * and temperature do not. B = 1 is exactly greedy decoding (quill generate leaves
 * --beam-size 1 to the sampler instead).
 *
 * Each beam has a KV cache slot. When beams branch, the first child of a beam takes its
 * parent's slot as it is and the others copy it into the slots of beams that ended, but
 * only the positions after the prompt (which every slot holds from the start): the prompt's
 * part is computed once and copied once.
 *
 * With words that must appear (quill generate --must-include) the search is lexically
 * constrained, by Post & Vilar's dynamic beam allocation (docs/sampling.md): each beam is
 * also extended by the tokens that go on with the words it lacks (must_include.h), the
 * extensions are grouped in banks by their progress towards the words and the B places are
 * dealt round the banks; an end of text is kept only from a beam that holds every word, and
 * the texts that hold them all rank first. */
#ifndef QUILL_BEAM_H
#define QUILL_BEAM_H

#include "must_include.h"
#include "session.h"

/* The n_best best hypotheses after sequence 0's prompt, best first, into out[0..*n_out)
 * (fewer than n_best when fewer were found). The session must have at least beam_size
 * sequences. With words that must appear (must: NULL or no words for none), each
 * hypothesis's missed says which of them its text lacks (those that hold them all rank
 * first). */
int beam_search(Session *s, int beam_size, float length_penalty, int n_best,
                const MustInclude *must, Completion *out, int *n_out, Error *err);

#endif
