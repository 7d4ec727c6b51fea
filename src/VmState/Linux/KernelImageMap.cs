using System.Buffers.Binary;
using VmState.Arch.X86;
using VmState.Memory;

namespace VmState.Linux;

/// <summary>
/// The mapped parts of the x86-64 kernel image window [<c>__START_KERNEL_map</c>, +1 GiB), read straight from the
/// page directory that covers it. The image mapping covers only [_text, roundup(_end, 2 MiB)) after
/// <c>cleanup_highmap()</c> (Linux <c>arch/x86/mm/init_64.c</c>), so the first mapped byte is <c>_text</c> — the
/// method of crash <c>kaslr_helper.c: find_kernel_start</c> and LibVMI <c>get_kaslr_offset_ia32e</c>. Freed init
/// memory leaves holes, which reads fill with zeros.
/// </summary>
internal sealed class KernelImageMap
{
    /// <summary><c>__START_KERNEL_map</c> (Linux <c>arch/x86/include/asm/page_64_types.h</c>).</summary>
    public const ulong StartKernelMap = 0xffff_ffff_8000_0000UL;

    /// <summary>End of the image window: KERNEL_IMAGE_SIZE is 1 GiB with KASLR; modules start here.</summary>
    public const ulong WindowEnd = 0xffff_ffff_c000_0000UL;

    private const ulong PhysMask = 0x000F_FFFF_FFFF_F000UL;

    private KernelImageMap(List<ImageRun> runs)
    {
        Runs = runs;
        Start = runs[0].Va;
        End = runs[^1].Va + runs[^1].Size;
    }

    /// <summary>First mapped address (<c>_text</c>).</summary>
    public ulong Start { get; }

    /// <summary>One past the last mapped byte.</summary>
    public ulong End { get; }

    /// <summary>Mapped runs, ascending, physically contiguous within each run.</summary>
    public List<ImageRun> Runs { get; }

    /// <summary>Bytes mapped.</summary>
    public ulong MappedBytes
    {
        get
        {
            ulong total = 0;
            foreach (ImageRun r in Runs)
            {
                total += r.Size;
            }

            return total;
        }
    }

    /// <summary>Maps the window through <paramref name="space"/>; null with a reason when nothing is mapped there.</summary>
    public static KernelImageMap? Find(AddressSpace space, out string failure)
    {
        // Walk to the page directory over the window by hand: PML5E[511] (5-level), PML4E[511], PDPTE[510].
        ulong table = space.Root;
        int[] indices = space.Mode == PagingMode.Level5 ? [511, 511, 510] : [511, 510];
        ulong dir = 0;
        Span<byte> entry = stackalloc byte[8];
        for (int level = 0; level < indices.Length; level++)
        {
            ulong at = table + (8UL * (uint)indices[level]);
            if (space.Memory.Read(at, entry) != 8)
            {
                failure = $"the page-table entry at physical 0x{at:x} for 0x{StartKernelMap:x} is not in guest memory";
                return null;
            }

            dir = BinaryPrimitives.ReadUInt64LittleEndian(entry);
            if ((dir & 1) == 0)
            {
                failure = $"0x{StartKernelMap:x} is not mapped (entry 0x{dir:x} at physical 0x{at:x} not present)";
                return null;
            }

            table = dir & PhysMask;
        }

        var runs = new List<ImageRun>();
        if ((dir & 0x80) != 0)
        {
            // A 1 GiB page over the whole window: cleanup_highmap has not run; the start cannot be told from the mapping.
            failure = "the kernel image window is one 1 GiB page, so the page tables do not show where _text is";
            return null;
        }

        Span<byte> pd = stackalloc byte[4096];
        Span<byte> pt = stackalloc byte[4096];
        if (space.Memory.Read(dir & PhysMask, pd) != 4096)
        {
            failure = $"the page directory at physical 0x{dir & PhysMask:x} is not in guest memory";
            return null;
        }

        for (int i = 0; i < 512; i++)
        {
            ulong pde = BinaryPrimitives.ReadUInt64LittleEndian(pd[(8 * i)..]);
            ulong va = StartKernelMap + ((ulong)i << 21);
            if ((pde & 1) == 0)
            {
                continue;
            }

            if ((pde & 0x80) != 0)
            {
                Add(runs, va, pde & PhysMask & ~0x1F_FFFFUL, 0x20_0000);
                continue;
            }

            if (space.Memory.Read(pde & PhysMask, pt) != 4096)
            {
                continue;
            }

            for (int j = 0; j < 512; j++)
            {
                ulong pte = BinaryPrimitives.ReadUInt64LittleEndian(pt[(8 * j)..]);
                if ((pte & 1) != 0)
                {
                    Add(runs, va + ((ulong)j << 12), pte & PhysMask, 0x1000);
                }
            }
        }

        if (runs.Count == 0)
        {
            failure = $"nothing is mapped in [0x{StartKernelMap:x}, 0x{WindowEnd:x})";
            return null;
        }

        failure = string.Empty;
        return new KernelImageMap(runs);
    }

    /// <summary>Physical address of <paramref name="va"/> inside the image, or null.</summary>
    public ulong? PhysicalOf(ulong va)
    {
        foreach (ImageRun r in Runs)
        {
            if (va >= r.Va && va - r.Va < r.Size)
            {
                return r.Pa + (va - r.Va);
            }
        }

        return null;
    }

    /// <summary>Reads [Start, End) into one buffer, holes as zeros.</summary>
    public byte[] Read(IPhysicalMemory memory)
    {
        byte[] image = new byte[End - Start];
        foreach (ImageRun r in Runs)
        {
            memory.Read(r.Pa, image.AsSpan((int)(r.Va - Start), (int)r.Size));
        }

        return image;
    }

    private static void Add(List<ImageRun> runs, ulong va, ulong pa, ulong size)
    {
        if (runs.Count > 0 && runs[^1].Va + runs[^1].Size == va && runs[^1].Pa + runs[^1].Size == pa)
        {
            runs[^1].Size += size;
        }
        else
        {
            runs.Add(new ImageRun { Va = va, Pa = pa, Size = size });
        }
    }

    /// <summary>A physically contiguous mapped run (a class: the list shares the framework's precompiled generic code).</summary>
    internal sealed class ImageRun
    {
        public ulong Va { get; init; }

        public ulong Pa { get; init; }

        public ulong Size { get; set; }
    }
}
