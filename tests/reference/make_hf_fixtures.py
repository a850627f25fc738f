#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers for Bert4Sharp's encoder and generation families.

Runs on the lent device machine (PyTorch 2.11, transformers 5.x), on its CPU in float32 so the numbers
are exact references (no TF32). Builds random-init models from small configs that keep the structure of
the staged upstream configs (../shared/models: ALBERT-tiny, RoFormerV2) but shrink widths so every file
is small, saves them in the Hugging Face layout, runs fixed inputs, and records:
  {family}/config.json, {family}/model.safetensors    save_pretrained output (HF names, tied weights dropped)
  {family}/io.safetensors                              inputs and outputs: input_ids, attention_mask,
                                                       token_type_ids, hidden_states.{i}, logits, ...
  {family}/generate.json                               greedy / beam outputs of model.generate (LMs)
  manifest.json                                        versions and what each family holds
Usage: python3 make_hf_fixtures.py OUT_DIR
"""
import json, os, sys
import torch
import transformers
from safetensors.torch import save_file

OUT = sys.argv[1]
ONLY = set(sys.argv[2:])          # optional: regenerate only these families
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(20261124)
torch.set_num_threads(8)
torch.backends.cuda.matmul.allow_tf32 = False
V = 1000          # shrunk vocabulary; ids 0..99 include the BERT specials at 0, 100-103 fall back below
PAD, CLS, SEP, MASK = 0, 1, 2, 3

manifest = {"torch": torch.__version__, "transformers": transformers.__version__, "families": {}}


def encoder_inputs():
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(5, V, (2, 12), generator=g)
    ids[:, 0] = CLS
    ids[0, -1] = SEP
    ids[1, 8] = SEP
    ids[1, 9:] = PAD                      # second row padded: 9 real tokens
    ids[0, 4] = MASK
    mask = (ids != PAD).long()
    mask[0] = 1
    tt = torch.zeros_like(ids)
    tt[0, 6:] = 1
    tt[1, 5:9] = 1
    return ids, mask, tt


def save(family, model, tensors, extra=None):
    d = os.path.join(OUT, family)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, os.path.join(d, "io.safetensors"))
    if extra is not None:
        with open(os.path.join(d, "generate.json"), "w") as f:
            json.dump(extra, f, indent=1)
    manifest["families"][family] = {"class": type(model).__name__, "io": sorted(tensors)}
    print(family, type(model).__name__, sum(p.numel() for p in model.parameters()), "params", flush=True)


def run_encoder(family, cls, config, heads=("logits",)):
    model = cls(config).eval()
    ids, mask, tt = encoder_inputs()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True)
    t = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}
    for i, h in enumerate(out.hidden_states):
        t[f"hidden_states.{i}"] = h
    for name in heads:
        v = getattr(out, name, None)
        if v is not None:
            t[name] = v
    save(family, model, t)


def try_family(name, fn):
    if ONLY and name not in ONLY:
        return
    try:
        fn()
    except Exception as e:     # a family missing from this transformers version is reported, not fatal
        manifest["families"][name] = {"error": f"{type(e).__name__}: {e}"}
        print("SKIP", name, e, flush=True)


common = dict(vocab_size=V, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
              max_position_embeddings=64, type_vocab_size=2, hidden_dropout_prob=0.0,
              attention_probs_dropout_prob=0.0, pad_token_id=PAD,
              initializer_range=0.2)   # 10x the usual init: random models with peaked, non-uniform attention

try_family("bert", lambda: run_encoder("bert", transformers.BertForPreTraining,
           transformers.BertConfig(hidden_act="gelu", **common), heads=("prediction_logits", "seq_relationship_logits")))
try_family("bert_mlm", lambda: run_encoder("bert_mlm", transformers.BertForMaskedLM,
           transformers.BertConfig(hidden_act="gelu", **common)))
# ALBERT-tiny's structure (factorised embedding 128 -> 312, one shared layer, gelu), shrunk: 32 -> 64.
try_family("albert", lambda: run_encoder("albert", transformers.AlbertForPreTraining,
           transformers.AlbertConfig(embedding_size=32, hidden_act="gelu", num_hidden_groups=1, inner_group_num=1,
                                     classifier_dropout_prob=0.0, **common), heads=("prediction_logits", "sop_logits")))
try_family("electra", lambda: run_encoder("electra", transformers.ElectraForPreTraining,
           transformers.ElectraConfig(embedding_size=32, hidden_act="gelu", **common)))
try_family("roformer", lambda: run_encoder("roformer", transformers.RoFormerForMaskedLM,
           transformers.RoFormerConfig(embedding_size=64, hidden_act="gelu", rotary_value=False, **common)))
try_family("nezha", lambda: run_encoder("nezha", transformers.NezhaForMaskedLM,
           transformers.NezhaConfig(hidden_act="gelu", max_relative_position=16, **common)))


def run_gpt2():
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=64, n_embd=64, n_layer=3, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=CLS, eos_token_id=SEP,
                                  activation_function="gelu_new", initializer_range=0.3)   # diverse greedy/beam paths
    model = transformers.GPT2LMHeadModel(cfg).eval()
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(5, V, (2, 10), generator=g)
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        prompt = ids[:1, :6]
        greedy = model.generate(prompt, max_new_tokens=16, do_sample=False, num_beams=1, eos_token_id=SEP, pad_token_id=PAD)
        beam = model.generate(prompt, max_new_tokens=16, do_sample=False, num_beams=4, eos_token_id=SEP, pad_token_id=PAD,
                              length_penalty=1.0, early_stopping=True)
    t = {"input_ids": ids, "logits": out.logits}
    for i, h in enumerate(out.hidden_states):
        t[f"hidden_states.{i}"] = h
    save("gpt2", model, t, {"prompt": prompt[0].tolist(), "greedy": greedy[0].tolist(), "beam4": beam[0].tolist(),
                            "max_new_tokens": 16, "eos_token_id": SEP, "length_penalty": 1.0, "early_stopping": True})


def run_t5(family, cls, cfg):
    model = cls(cfg).eval()
    g = torch.Generator().manual_seed(13)
    enc = torch.randint(5, V, (2, 9), generator=g)
    enc[1, 6:] = PAD
    enc_mask = (enc != PAD).long()
    dec = torch.randint(5, V, (2, 5), generator=g)
    dec[:, 0] = PAD                                   # decoder_start_token_id = pad = 0
    with torch.no_grad():
        out = model(input_ids=enc, attention_mask=enc_mask, decoder_input_ids=dec, output_hidden_states=True)
        greedy = model.generate(enc[:1], attention_mask=enc_mask[:1], max_new_tokens=12, do_sample=False, num_beams=1)
        beam = model.generate(enc[:1], attention_mask=enc_mask[:1], max_new_tokens=12, do_sample=False, num_beams=4,
                              length_penalty=1.0, early_stopping=True)
    t = {"input_ids": enc, "attention_mask": enc_mask, "decoder_input_ids": dec, "logits": out.logits,
         "encoder_last_hidden_state": out.encoder_last_hidden_state}
    for i, h in enumerate(out.encoder_hidden_states):
        t[f"encoder_hidden_states.{i}"] = h
    for i, h in enumerate(out.decoder_hidden_states):
        t[f"decoder_hidden_states.{i}"] = h
    save(family, model, t, {"input": enc[0].tolist(), "greedy": greedy[0].tolist(), "beam4": beam[0].tolist(),
                            "max_new_tokens": 12, "eos_token_id": cfg.eos_token_id, "decoder_start_token_id": cfg.decoder_start_token_id})


t5_common = dict(vocab_size=V, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
                 pad_token_id=PAD, eos_token_id=1, decoder_start_token_id=PAD,
                 initializer_factor=8.0)   # T5 scales its init by this; larger gives non-degenerate decoding
try_family("gpt2", run_gpt2)
try_family("t5_v1_0", lambda: run_t5("t5_v1_0", transformers.T5ForConditionalGeneration,
           transformers.T5Config(feed_forward_proj="relu", tie_word_embeddings=True, **t5_common)))
try_family("t5_v1_1", lambda: run_t5("t5_v1_1", transformers.T5ForConditionalGeneration,
           transformers.T5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False, **t5_common)))
try_family("mt5", lambda: run_t5("mt5", transformers.MT5ForConditionalGeneration,
           transformers.MT5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False, **t5_common)))

def run_roberta():
    cfg = transformers.RobertaConfig(**{**common, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
                                        "max_position_embeddings": 66, "type_vocab_size": 1}, hidden_act="gelu")
    model = transformers.RobertaForMaskedLM(cfg).eval()
    ids, mask, _ = encoder_inputs()
    ids = ids.clone()
    ids[ids == PAD] = 1                      # RoBERTa pads with 1; positions count from padding_idx + 1
    ids[:, 0] = 0
    mask = (ids != 1).long()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    t = {"input_ids": ids, "attention_mask": mask, "logits": out.logits}
    for i, h in enumerate(out.hidden_states):
        t[f"hidden_states.{i}"] = h
    save("roberta", model, t)


try_family("roberta", run_roberta)

# The T5 relative-position bucket function itself, for a table test.
try:
    if ONLY:
        raise RuntimeError("skipped (only %s)" % sorted(ONLY))
    from transformers.models.t5.modeling_t5 import T5Attention
    rel = torch.arange(-140, 141)
    tables = {}
    for bidirectional in (True, False):
        b = T5Attention._relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=32, max_distance=128)
        tables["bidirectional" if bidirectional else "causal"] = b.tolist()
    with open(os.path.join(OUT, "t5_buckets.json"), "w") as f:
        json.dump({"relative_position": rel.tolist(), **tables}, f)
except Exception as e:
    manifest["t5_buckets_error"] = str(e)

with open(os.path.join(OUT, "manifest.json" if not ONLY else "manifest.partial.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print(json.dumps(manifest)[:2000])
