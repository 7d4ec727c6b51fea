namespace VmState.Formats;

/// <summary>Caps on counts and sizes read from an untrusted file, so a hostile input can't make us allocate without bound.</summary>
public sealed record ReaderLimits
{
    /// <summary>The defaults.</summary>
    public static readonly ReaderLimits Default = new();

    /// <summary>Largest total guest RAM accepted (sum of RAMBlock lengths).</summary>
    public ulong MaxGuestRam { get; init; } = 1UL << 40;

    /// <summary>Most RAMBlocks accepted.</summary>
    public int MaxRamBlocks { get; init; } = 4096;

    /// <summary>Largest VM description JSON accepted.</summary>
    public int MaxVmDescriptionBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>Most sections accepted.</summary>
    public int MaxSections { get; init; } = 1_000_000;

    /// <summary>Most vCPUs accepted.</summary>
    public int MaxCpus { get; init; } = 4096;

    /// <summary>
    /// Most decoded device fields (every field, array element and struct, over all device sections of one stream).
    /// Each one is an object, so this caps the memory the VM description can make the decoder allocate. A QEMU
    /// 7.2 pc guest has about 1,300 described fields; the largest arrays QEMU describes element by element are a
    /// few tens of thousands long (e1000 <c>mac_reg</c>, 0x8000 uint32s), so a million leaves room for hundreds
    /// of vCPUs and NICs.
    /// </summary>
    public int MaxDecodedFields { get; init; } = 1 << 20;

    /// <summary>
    /// Most array elements of 0 bytes (over one stream). QEMU 7.2 <c>vmsd_desc_field_end</c> records as "size" the
    /// bytes the first element wrote; an element that wrote nothing carries no data, so the stream's length can't
    /// bound how many there are and only this count does. Real descriptions have none (the 7.2 pc fixture) or a
    /// handful; 4096 is generous and keeps a hostile <c>array_len</c> from creating millions of objects.
    /// </summary>
    public int MaxEmptyElements { get; init; } = 4096;
}
