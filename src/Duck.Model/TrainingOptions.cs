// The trainer's options: one record, every property with a default and a one-line doc. The CLI binds flags and
// config keys onto it; checkpoints save it whole. Preset-dependent defaults come from ForPreset.
using System.Text.Json.Serialization;

namespace Duck.Model;

/// <summary>How to train: sizes, schedule, optimizer, evaluation and checkpoint policy.</summary>
public sealed record TrainingOptions
{
    /// <summary>Model preset name (tiny, mini, small, 700m, 1.3b, 3b).</summary>
    public string Preset { get; init; } = "mini";
    /// <summary>Optimizer steps to take in all (the schedule spans them).</summary>
    public int Steps { get; init; } = 600;
    /// <summary>Sequences per micro-batch.</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>Tokens per sequence; at most the preset's context length.</summary>
    public int SequenceLength { get; init; } = 128;
    /// <summary>Micro-batches whose gradients are summed into one step.</summary>
    public int GradAccumulation { get; init; } = 1;
    /// <summary>Peak learning rate of the first stage.</summary>
    public double LearningRate { get; init; } = 2e-3;
    /// <summary>Learning rate at the start of the second stage (BitNet's two-stage schedule drops it at the midpoint).</summary>
    public double SecondStageLearningRate { get; init; } = 8e-4;
    /// <summary>Linear warm-up steps.</summary>
    public int WarmupSteps { get; init; } = 50;
    /// <summary>Weight decay of the first stage; the second stage uses none.</summary>
    public double WeightDecay { get; init; } = 0.1;
    /// <summary>AdamW beta1.</summary>
    public double Beta1 { get; init; } = 0.9;
    /// <summary>AdamW beta2.</summary>
    public double Beta2 { get; init; } = 0.95;
    /// <summary>Global gradient-norm clip (0: off).</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Seed for initialization and data order.</summary>
    public long Seed { get; init; } = 1337;
    /// <summary>Evaluate validation loss every N steps (0: only at the end).</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Validation batches per evaluation.</summary>
    public int EvalBatches { get; init; } = 20;
    /// <summary>Checkpoint every N steps (0: only at the end).</summary>
    public int CheckpointEvery { get; init; } = 200;
    /// <summary>How many checkpoints to keep.</summary>
    public int KeepCheckpoints { get; init; } = 3;
    /// <summary>Train the FP32 twin (quantization off).</summary>
    public bool Fp32 { get; init; }
    /// <summary>Tie the LM head to the token embedding (needed for llama.cpp export).</summary>
    public bool TiedHead { get; init; }
    /// <summary>libtorch intra-op threads (0: all cores).</summary>
    public int Threads { get; init; }

    [JsonIgnore] public long TokensPerStep => (long)BatchSize * SequenceLength * GradAccumulation;

    /// <summary>Defaults tuned per preset; unknown presets keep the record's defaults.</summary>
    public static TrainingOptions ForPreset(string preset) => preset switch
    {
        "tiny" => new() { Preset = preset, Steps = 200, BatchSize = 8, SequenceLength = 64, LearningRate = 3e-3,
                          SecondStageLearningRate = 1.2e-3, WarmupSteps = 20, EvalEvery = 50, EvalBatches = 4, CheckpointEvery = 100 },
        // About ten minutes on 2 cores: 240 steps x 2,048 tokens.
        "mini" => new() { Preset = preset, Steps = 240, WarmupSteps = 20, EvalEvery = 40, EvalBatches = 10, CheckpointEvery = 80 },
        _ => new() { Preset = preset, Steps = 2000, BatchSize = 8, SequenceLength = 256, LearningRate = 1.5e-3,
                      SecondStageLearningRate = 6e-4, WarmupSteps = 200, EvalEvery = 200, CheckpointEvery = 500 },
    };

    /// <summary>Fine-tuning defaults from the base run's options: the whole context per row (at most 256 tokens), the
    /// rate of pretraining's first stage without weight decay, and evaluation on the full held-out set. On mini
    /// (about 20 epochs of the persona at a 0.15 pretraining mix) 240 steps at 2e-3 lowered the held-out reply loss by
    /// 37%; 150 steps at 1.5e-3 by 35% (docs/persona.md).</summary>
    public static TrainingOptions ForFinetune(TrainingOptions pretraining, int contextLength, int modelDim) => pretraining with
    {
        Steps = 240, SequenceLength = Math.Min(contextLength, 256), BatchSize = modelDim <= 64 ? 8 : 16, GradAccumulation = 1,
        LearningRate = 2e-3, SecondStageLearningRate = 1e-3, WarmupSteps = 10, WeightDecay = 0,
        EvalEvery = 25, EvalBatches = 100, CheckpointEvery = 50,
    };

    /// <summary>Throws with the offending values when the options cannot work together.</summary>
    public TrainingOptions Validate(int contextLength)
    {
        void Require(bool ok, string message) { if (!ok) throw new ArgumentException(message); }
        Require(Steps > 0, $"steps must be positive, got {Steps}");
        Require(BatchSize > 0, $"batch size must be positive, got {BatchSize}");
        Require(SequenceLength > 1 && SequenceLength <= contextLength,
            $"sequence length {SequenceLength} must be within 2..{contextLength} (the preset's context length)");
        Require(GradAccumulation > 0, $"gradient accumulation must be positive, got {GradAccumulation}");
        Require(LearningRate > 0 && LearningRate < 1, $"learning rate {LearningRate} must be in (0, 1)");
        Require(SecondStageLearningRate > 0 && SecondStageLearningRate <= LearningRate,
            $"second-stage learning rate {SecondStageLearningRate} must be in (0, {LearningRate}]");
        Require(WarmupSteps >= 0 && WarmupSteps < Steps, $"warm-up steps {WarmupSteps} must be in [0, {Steps})");
        Require(WeightDecay >= 0 && WeightDecay < 1, $"weight decay {WeightDecay} must be in [0, 1)");
        Require(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, $"betas ({Beta1}, {Beta2}) must be in [0, 1)");
        Require(GradClip >= 0, $"gradient clip {GradClip} must not be negative");
        Require(EvalEvery >= 0 && EvalBatches > 0, $"eval every {EvalEvery} / eval batches {EvalBatches} must be >= 0 / > 0");
        Require(CheckpointEvery >= 0 && KeepCheckpoints > 0, $"checkpoint every {CheckpointEvery} / keep {KeepCheckpoints} must be >= 0 / > 0");
        Require(Threads >= 0, $"threads {Threads} must not be negative");
        return this;
    }
}

/// <summary>BitNet b1.58's two-stage schedule: warm-up, linear decay of the peak rate to half over the first half
/// with weight decay on; then a drop to the second-stage rate, decaying linearly to a tenth of it, weight decay off.</summary>
public static class TwoStageSchedule
{
    public static (double LearningRate, double WeightDecay) At(TrainingOptions o, int step)
    {
        int half = Math.Max(o.Steps / 2, o.WarmupSteps + 1);
        if (step < o.WarmupSteps) return (o.LearningRate * (step + 1) / o.WarmupSteps, o.WeightDecay);
        if (step < half)
        {
            double f = (double)(step - o.WarmupSteps) / Math.Max(1, half - o.WarmupSteps);
            return (o.LearningRate * (1 - 0.5 * f), o.WeightDecay);
        }
        double g = (double)(step - half) / Math.Max(1, o.Steps - half);
        return (o.SecondStageLearningRate * (1 - 0.9 * g), 0);
    }
}
