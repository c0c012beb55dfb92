"""Builders for the shapes model's components, in diffusers / transformers formats.

Why a separate module: training, tests and evaluation must all agree on the exact architecture and on the
tokenizer's special tokens; keeping the constructors here (pure functions, no state) makes that one place.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from vdgraph_shapes.world import IMAGE_SIZE, vocabulary

MAX_LENGTH: int = 77
"""Token sequence length, as CLIP's, so pipelines written for Stable Diffusion tokenize exactly the same way."""

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS)
"""Special tokens; their ids are 0..3 in this order."""

LATENT_CHANNELS: int = 4
VAE_REDUCTION: int = 4
LATENT_SIZE: int = IMAGE_SIZE // VAE_REDUCTION


def build_tokenizer(extra_words: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the caption vocabulary that behaves like CLIP's under `tokenizer(...)` calls.

    `extra_words` are appended after the image vocabulary (the motion words of train_motion.MOTION_WORDS), so
    every existing id is unchanged and the extended tokenizer reads image captions exactly as before.

    Lower-cases, drops punctuation ("a red circle, on ..." tokenizes like the caption), splits on whitespace, wraps the words in BOS ... EOS, pads with PAD on the right
    up to `model_max_length` = 77. Unknown words map to UNK rather than failing, as CLIP's BPE never fails.
    """
    words = [*vocabulary(), *(w for w in extra_words if w not in vocabulary())]
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s<>|]"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} $B {EOS}",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_LENGTH,
        padding_side="right",
        truncation_side="right",
    )


def build_text_encoder(tokenizer: PreTrainedTokenizerFast, hidden_size: int = 64, layers: int = 2) -> CLIPTextModel:
    """A tiny CLIP text transformer (causal, learned positions); the UNet reads its last hidden state."""
    assert hidden_size % 16 == 0, f"hidden_size must be a multiple of 16 (heads of 16), got {hidden_size}"
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        projection_dim=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=hidden_size // 16,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return CLIPTextModel(config)


def build_vae(norm_groups: int = 2) -> AutoencoderKL:
    """A tiny KL autoencoder: 64x64x3 <-> 16x16x4 (two downsamplings), no mid-block attention.

    Why no attention: the world has no long-range structure beyond a plain background, and a purely
    convolutional VAE is ~2x cheaper to train on two CPU cores.
    Why few norm groups: GroupNorm removes each group's mean and scale per image, and on a plain-coloured image
    a group of 2 channels keeps little more than a sign, so the decoder's last norm erased the colours (the
    first VAE learnt slowly and got shape colours wrong). 8-16 channels per group keep them.
    """
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=norm_groups,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
    )


def build_unet(
    cross_attention_dim: int, channels: tuple[int, int, int] = (32, 64, 64), norm_groups: int = 8
) -> UNet2DConditionModel:
    """A small text-conditioned UNet on 16x16x4 latents.

    Cross-attention (and self-attention, which Text2Video-Zero turns into cross-frame attention) runs at 8x8 and
    4x4 only: attention at 16x16 doubled the step time for no visible gain. `addition_embed_type="text"` adds an
    attention-pooled summary of the prompt to the time embedding, so every resolution, including 16x16, sees
    the colours; it needs nothing extra from the pipelines (it reads encoder_hidden_states).
    """
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,  # diffusers' legacy name: this is the number of heads
        norm_num_groups=norm_groups,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def build_scheduler() -> DDIMScheduler:
    """DDIM with the cosine ("squaredcos_cap_v2") betas, v-prediction, trailing spacing.

    Why not SD's epsilon / scaled_linear or DDPM's epsilon / linear (the first model used the latter):
    - on 16x16 latents of flat colours, linear betas leave SNR < 0.01 for the last 30% of timesteps, where an
      epsilon model's x0 estimate amplifies its error ~12-100x; the first model (1000 steps) produced noise blobs.
      v-prediction is well conditioned at every SNR and the cosine schedule spends the steps at useful SNRs;
    - scaled_linear keeps sqrt(alpha_bar) ~ 0.07 of the signal at t=999, and in this world the signal is mostly
      the plain background colour, so the model would read the background from the noise instead of the prompt.
      Cosine leaves ~5e-5 (not exactly 0, so no schedule quantity divides by zero).
    Trailing spacing makes the first DDIM step start at t=999 (pure noise), as the model was trained.
    """
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # unused by trailing spacing; 1 keeps StableDiffusionPipeline from "fixing" the config
        prediction_type="v_prediction",
        timestep_spacing="trailing",
    )
