// Copies between CPU tensors and .NET arrays as one block copy. TorchSharp's TensorAccessor.ToArray walks the tensor
// element by element (a native numel call per element): on `mini`'s 12.9 M-value embedding gradient that was most of
// a worker's gradient encode.
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Duck.Model;

public static class TensorArrays
{
    /// <summary>The values of a CPU tensor of element type <typeparamref name="T"/>, row-major, in a new array.</summary>
    public static T[] ToArrayFast<T>(this Tensor tensor) where T : unmanaged
    {
        using var c = tensor.contiguous();
        if (c.numel() == 0) return [];
        if (c.ElementSize != Marshal.SizeOf<T>()) throw new ArgumentException($"tensor of {c.dtype} read as {typeof(T).Name}");
        return MemoryMarshal.Cast<byte, T>(c.bytes).ToArray();
    }

    /// <summary>The values of <paramref name="tensor"/> detached from autograd, in a new array. The detached wrapper is held
    /// until the copy is made: chained as `t.detach().contiguous()` outside a dispose scope, it is unreferenced during
    /// the native call and the finalizer may free it there (see AdamW.ZeroGrad).</summary>
    public static T[] DetachedArray<T>(this Tensor tensor) where T : unmanaged
    {
        using var detached = tensor.detach();
        return detached.ToArrayFast<T>();
    }
}
