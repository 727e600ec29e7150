"""Test helper: copy an unpruned model's weights into a model built from a pruned config, by
slicing each kept head's rows and columns by hand (an independent check of the model code;
the library's own slicing lives in MultiHeadAttention.select_heads)."""

import torch


def copy_kept_heads(full: torch.nn.Module, pruned: torch.nn.Module) -> None:
    cfg = pruned.config
    d, e = cfg.head_size, cfg.d_model
    hq, hkv = cfg.num_heads, cfg.kv_heads
    state = full.state_dict()
    with torch.no_grad():
        for key, value in pruned.state_dict().items():
            if ".attn." not in key:
                value.copy_(state[key])
        for layer, block in enumerate(pruned.blocks):
            heads = cfg.heads_of(layer)
            src = full.blocks[layer].attn
            w = src.in_proj.weight  # (Hq D + 2 Hkv D, E)
            wq, wk, wv = w[: hq * d], w[hq * d : (hq + hkv) * d], w[(hq + hkv) * d :]
            rows = lambda m, ids: torch.cat([m[i * d : (i + 1) * d] for i in ids])  # noqa: E731
            block.attn.in_proj.weight.copy_(
                torch.cat((rows(wq, heads.query), rows(wk, heads.kv), rows(wv, heads.kv)))
            )
            if src.in_proj.bias is not None:
                b = src.in_proj.bias
                bq, bk, bv = b[: hq * d], b[hq * d : (hq + hkv) * d], b[(hq + hkv) * d :]
                block.attn.in_proj.bias.copy_(
                    torch.cat((rows(bq, heads.query), rows(bk, heads.kv), rows(bv, heads.kv)))
                )
            cols = src.out_proj.weight.view(e, hq, d)[:, list(heads.query)]  # (E, H_l, D)
            block.attn.out_proj.weight.copy_(cols.reshape(e, -1))  # (E, H_l D)
            if src.out_proj.bias is not None:
                block.attn.out_proj.bias.copy_(src.out_proj.bias)


def removed_mask(cfg, dtype=torch.float64) -> torch.Tensor:
    """The (L, H) head mask of the unpruned model that removes the heads the pruned config
    dropped."""
    mask = torch.zeros(cfg.num_layers, cfg.num_heads, dtype=dtype)
    for layer in range(cfg.num_layers):
        mask[layer, list(cfg.heads_of(layer).query)] = 1
    return mask
