// The enumerations and size rules of the GGUF v3 container and the ggml tensor types Duck reads and writes.
// Constants only: reading is GgufFile, writing is GgufWriter.
namespace Duck.Inference.Gguf;

/// <summary>GGUF metadata value types (gguf.h).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>The ggml tensor types this engine understands (values as in ggml.h).</summary>
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q8_0 = 8, TQ1_0 = 34, TQ2_0 = 35,
}

/// <summary>Block sizes and byte counts of the ggml tensor types.</summary>
public static class GgmlTypes
{
    /// <summary>Elements per super-block of the ternary types (ggml's QK_K).</summary>
    public const int QK_K = 256;
    /// <summary>Elements per Q8_0 block.</summary>
    public const int QK8_0 = 32;
    /// <summary>Bytes of one TQ2_0 block: 64 bytes of 2-bit codes and an fp16 scale.</summary>
    public const int Tq2BlockBytes = QK_K / 4 + 2;
    /// <summary>Bytes of one TQ1_0 block: 48 bytes of 5 trits, 4 bytes of 4 trits, an fp16 scale.</summary>
    public const int Tq1BlockBytes = (QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2;
    /// <summary>Bytes of one Q8_0 block: an fp16 scale and 32 int8.</summary>
    public const int Q8BlockBytes = 2 + QK8_0;

    public static bool IsKnown(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.Q8_0 or GgmlType.TQ1_0 or GgmlType.TQ2_0;

    /// <summary>Elements per block of the type.</summary>
    public static int BlockElements(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.F16 => 1,
        GgmlType.Q8_0 => QK8_0,
        GgmlType.TQ1_0 or GgmlType.TQ2_0 => QK_K,
        _ => throw new InvalidDataException($"unsupported ggml tensor type {(uint)type}"),
    };

    /// <summary>Bytes per block of the type.</summary>
    public static int BlockBytes(GgmlType type) => type switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 => 2,
        GgmlType.Q8_0 => Q8BlockBytes,
        GgmlType.TQ1_0 => Tq1BlockBytes,
        GgmlType.TQ2_0 => Tq2BlockBytes,
        _ => throw new InvalidDataException($"unsupported ggml tensor type {(uint)type}"),
    };

    /// <summary>Bytes of a tensor with inner dimension <paramref name="ne0"/> and <paramref name="rows"/> rows; ne0 must be a whole number of blocks.</summary>
    public static long TensorBytes(GgmlType type, long ne0, long rows)
    {
        int be = BlockElements(type);
        if (ne0 % be != 0)
            throw new InvalidDataException($"inner dimension {ne0} is not a multiple of the {type} block size {be}");
        return ne0 / be * BlockBytes(type) * rows;
    }
}
