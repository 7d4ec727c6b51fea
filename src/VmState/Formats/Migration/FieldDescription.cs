namespace VmState.Formats.Migration;

/// <summary>
/// One field of a <see cref="VmsdDescription"/>. <see cref="Size"/> is the size of one element; with
/// <see cref="ArrayLength"/> the element is repeated that many times (QEMU's "array compression").
/// </summary>
internal sealed record FieldDescription(string Name, string Type, int Size, int? ArrayLength, int? Index, VmsdDescription? Struct)
{
    /// <summary>Bytes on the wire for the whole field.</summary>
    public long TotalSize => (long)Size * (ArrayLength ?? 1);
}
