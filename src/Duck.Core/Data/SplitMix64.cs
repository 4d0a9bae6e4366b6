// A tiny seeded random generator whose whole state is one ulong, so a data cursor can save and restore it exactly.
// SplitMix64 (Steele, Lea, Flood 2014), as used to seed xoshiro. Not cryptographic; not System.Random (whose
// state cannot be serialized and whose sequence may change between .NET versions).
namespace Duck.Core.Data;

/// <summary>SplitMix64: a 64-bit generator with explicit, serializable state.</summary>
public struct SplitMix64
{
    /// <summary>The whole generator state; assigning it restores the sequence from that point.</summary>
    public ulong State;

    public SplitMix64(ulong seed) => State = seed;

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform integer in [0, exclusiveBound) without modulo bias (Lemire's multiply-shift with rejection).</summary>
    public ulong NextBelow(ulong exclusiveBound)
    {
        if (exclusiveBound == 0) throw new ArgumentOutOfRangeException(nameof(exclusiveBound), "bound must be positive");
        ulong threshold = (0 - exclusiveBound) % exclusiveBound;
        while (true)
        {
            ulong high = Math.BigMul(NextUInt64(), exclusiveBound, out ulong low);
            if (low >= threshold) return high;
        }
    }

    /// <summary>One-shot mix of a value (the generator's output function), for hashing seeds and names.</summary>
    public static ulong Mix(ulong value) => new SplitMix64(value).NextUInt64();
}
