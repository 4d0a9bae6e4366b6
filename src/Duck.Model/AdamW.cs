// AdamW over named parameters with its moments held as plain tensors, so that a checkpoint can store them in
// safetensors by name and the parameter-server grain can run the same update. Decoupled weight decay applies
// to matrices only (not to norm gains), as in nanoGPT.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Duck.Model;

/// <summary>AdamW with per-step learning rate and weight decay (the two-stage schedule changes both).</summary>
public sealed class AdamW : IDisposable
{
    readonly (string Name, Parameter Param, Tensor M, Tensor V)[] slots;
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    /// <summary>Optimizer steps taken so far (bias correction uses it).</summary>
    public long StepCount { get; private set; }

    public AdamW(IEnumerable<(string Name, Parameter Param)> parameters, double beta1 = 0.9, double beta2 = 0.95, double eps = 1e-8)
    {
        Beta1 = beta1; Beta2 = beta2; Eps = eps;
        slots = parameters.Select(p => (p.Name, p.Param, zeros_like(p.Param).DetachFromDisposeScope(), zeros_like(p.Param).DetachFromDisposeScope())).ToArray();
    }

    /// <summary>One update of every parameter that has a gradient.</summary>
    public void Step(double learningRate, double weightDecay)
    {
        StepCount++;
        double bc1 = 1 - Math.Pow(Beta1, StepCount), bc2 = 1 - Math.Pow(Beta2, StepCount);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        // Explicit Scalars held to the end: implicit ones are temporaries the finalizer may free mid-call (see BitQuant).
        using Scalar beta1 = Beta1.ToScalar(), keep1 = (1 - Beta1).ToScalar(), beta2 = Beta2.ToScalar(), keep2 = (1 - Beta2).ToScalar(),
            decay = (1 - learningRate * weightDecay).ToScalar(), correction2 = bc2.ToScalar(), eps = Eps.ToScalar(),
            stepSize = (-learningRate / bc1).ToScalar();
        foreach (var (_, p, m, v) in slots)
        {
            var g = p.grad;
            if (g is null) continue;
            m.mul_(beta1).add_(g, alpha: keep1);
            v.mul_(beta2).addcmul_(g, g, value: keep2);
            if (weightDecay > 0 && p.dim() >= 2) p.mul_(decay);
            var denom = v.div(correction2).sqrt_().add_(eps, BitQuant.One);
            p.addcdiv_(m, denom, value: stepSize);
        }
    }

    public void ZeroGrad()
    {
        foreach (var (_, p, _, _) in slots)
        {
            // Both wrappers held until zero_ returns: `p.grad?.zero_()` leaves the fresh grad wrapper unreferenced during
            // the native call, and outside a dispose scope the finalizer may free it there (a CI test host crashed in
            // THSTensor_zeros_out). Same hazard as BitQuant's implicit Scalars.
            using var grad = p.grad;
            if (grad is null) continue;
            using var zeroed = grad.zero_();
        }
    }

    /// <summary>The moments by name: "m.{param}" and "v.{param}".</summary>
    public IEnumerable<(string Name, Tensor Value)> State() =>
        slots.SelectMany(s => new[] { ("m." + s.Name, s.M), ("v." + s.Name, s.V) });

    /// <summary>Restores moments and step count; throws naming the first missing or mis-shaped moment.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        using var noGrad = no_grad();
        foreach (var (name, _, m, v) in slots)
        {
            foreach (var (key, target) in new[] { ("m." + name, m), ("v." + name, v) })
            {
                if (!state.TryGetValue(key, out var value))
                    throw new InvalidDataException($"optimizer state lacks '{key}'");
                if (!value.shape.SequenceEqual(target.shape))
                    throw new InvalidDataException($"optimizer state '{key}' has shape [{string.Join(", ", value.shape)}], expected [{string.Join(", ", target.shape)}]");
                target.copy_(value);
            }
        }
        StepCount = stepCount;
    }

    public void Dispose()
    {
        foreach (var (_, _, m, v) in slots) { m.Dispose(); v.Dispose(); }
    }
}
