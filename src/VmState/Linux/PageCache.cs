using VmState.Arch.X86;
using VmState.Memory;

namespace VmState.Linux;

/// <summary>
/// A file as the guest kernel's page cache holds it: its size (<c>inode->i_size</c>), and for each 4 KiB page of
/// the file the guest-physical frame that holds it, when the page is in memory. Made by
/// <see cref="PageCache.Read(LinuxKernel, KernelObject)"/>; reads come from guest-physical memory.
/// </summary>
public sealed class CachedFile
{
    private readonly IPhysicalMemory _memory;
    private readonly Dictionary<long, ulong> _frames;

    internal CachedFile(string path, long size, Dictionary<long, ulong> frames, IPhysicalMemory memory)
    {
        Path = path;
        Size = size;
        _frames = frames;
        _memory = memory;
    }

    /// <summary>The file's path in the guest (<c>d_path</c> of the file).</summary>
    public string Path { get; }

    /// <summary>The file's size in bytes (<c>inode->i_size</c>).</summary>
    public long Size { get; }

    /// <summary>Pages the file has (its size rounded up to whole pages).</summary>
    public long PageCount => (Size + PageCache.PageSize - 1) / PageCache.PageSize;

    /// <summary>Pages of the file that are in the page cache.</summary>
    public long PagesPresent => _frames.Count;

    /// <summary>True when every page of the file is in memory, so that <see cref="Read"/> gives the whole file.</summary>
    public bool IsComplete => PagesPresent == PageCount;

    /// <summary>True when page <paramref name="index"/> (of <see cref="PageCache.PageSize"/> bytes) is in memory.</summary>
    public bool IsPresent(long index) => _frames.ContainsKey(index);

    /// <summary>The guest-physical address of page <paramref name="index"/>, or null when it is not in memory.</summary>
    public ulong? FrameOf(long index) => _frames.TryGetValue(index, out ulong f) ? f : null;

    /// <summary>
    /// Reads file bytes at <paramref name="offset"/> into <paramref name="destination"/>, up to the end of the file;
    /// returns the count read (0 at or past the end).
    /// </summary>
    /// <exception cref="KernelDataException">A page of the range is not in memory, or guest memory cannot be read.</exception>
    public int Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (offset >= Size)
        {
            return 0;
        }

        int total = (int)Math.Min(destination.Length, Size - offset);
        int done = 0;
        while (done < total)
        {
            long at = offset + done;
            long index = at / PageCache.PageSize;
            int inPage = (int)(at % PageCache.PageSize);
            int n = Math.Min(total - done, PageCache.PageSize - inPage);
            if (!_frames.TryGetValue(index, out ulong frame))
            {
                throw new KernelDataException((ulong)at, Path, $"page {index} of the file (offset 0x{index * PageCache.PageSize:x}) is not in the guest's page cache");
            }

            Span<byte> part = destination.Slice(done, n);
            for (int got = 0; got < n;)
            {
                int r = _memory.Read(frame + (ulong)(inPage + got), part[got..]);
                if (r <= 0)
                {
                    throw new KernelDataException(frame + (ulong)(inPage + got), Path, "guest-physical memory is not backed there");
                }

                got += r;
            }

            done += n;
        }

        return total;
    }
}

/// <summary>
/// The guest kernel's page cache (<c>mm/filemap.c</c>): the pages of a file are kept in the <c>xarray</c>
/// <c>file->f_mapping->i_pages</c> (<c>include/linux/xarray.h</c>, <c>lib/xarray.c</c>), indexed by page number in the
/// file. Each present entry is a <c>struct folio</c>/<c>struct page</c> pointer into the kernel's <c>vmemmap</c>
/// array, whose position gives the page frame number. The walk is bounded (nodes, depth and entries), every node
/// must point back at its parent and slot, and every page must name the same <c>address_space</c> and index the
/// xarray filed it under; a page evicted from the cache (a value entry, the "shadow" the kernel leaves) is absent.
/// x86-64 and AArch64: the frame of a <c>struct page</c> comes from the architecture's <c>vmemmap</c>.
/// </summary>
public static class PageCache
{
    /// <summary>The page size of the cache (4 KiB; large folios span several such pages).</summary>
    public const int PageSize = 4096;

    /// <summary>Files larger than this are refused (their page map would be the size of the guest's RAM).</summary>
    public const long MaxFileSize = 1L << 40;

    private const ulong VmemmapLevel4 = 0xffff_ea00_0000_0000UL;   // VMEMMAP_START, 4-level paging, no KASLR
    private const ulong VmemmapLevel5 = 0xffd4_0000_0000_0000UL;   // VMEMMAP_START, 5-level paging

    /// <summary>
    /// The executable of process <paramref name="pid"/> (<c>mm->exe_file</c>, what <c>/proc/PID/exe</c> links to) as
    /// the page cache holds it; null for a kernel thread or a process without an executable file.
    /// </summary>
    /// <exception cref="KernelDataException">No such process, or corrupt or unreadable kernel data.</exception>
    public static CachedFile? Executable(LinuxKernel kernel, int pid)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        KernelObject task = MemoryMaps.FindTask(kernel, pid);
        KernelObject mm = task.Member("mm");
        if (mm.IsNull)
        {
            return null;
        }

        KernelObject exe = mm.Member("exe_file");
        return exe.IsNull ? null : Read(kernel, exe);
    }

    /// <summary>The file <paramref name="file"/> (a <c>struct file *</c> or a <c>struct file</c>) as the page cache holds it.</summary>
    /// <exception cref="KernelDataException">A corrupt xarray, a page that belongs elsewhere, or unreadable kernel data.</exception>
    public static CachedFile Read(LinuxKernel kernel, KernelObject file)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(file);
        string path = DentryPaths.DPath(kernel, file.Member("f_path"));
        KernelObject mapping = file.Member("f_mapping");
        ulong mappingAddress = mapping.ToUInt64();
        long size = mapping.Member("host").Member("i_size").ToInt64();
        if (size < 0 || size > MaxFileSize)
        {
            throw new KernelDataException(mappingAddress, path, $"i_size {size} is outside 0..{MaxFileSize}");
        }

        long pages = (size + PageSize - 1) / PageSize;
        var frames = new Dictionary<long, ulong>();
        var pageCheck = new PageCheck(kernel, $"page cache of {path}", mappingAddress, pages, frames);
        foreach (XArrayEntry e in kernel.XaForEach(mapping.Member("i_pages"), pages, $"page cache of {path}"))
        {
            // Value entries (shadows of evicted pages) are pages not in memory.
            if (!e.IsValue)
            {
                pageCheck.AddPage(e.Index, e.Entry, e.Count);
            }
        }

        return new CachedFile(path, size, frames, kernel.Memory);
    }

    /// <summary>
    /// The guest-physical address of the <c>struct page</c> at <paramref name="page"/> (<c>page_to_pfn</c> with
    /// SPARSEMEM_VMEMMAP: its index in the <c>vmemmap</c> array), or null when it is not an element of that array.
    /// </summary>
    public static ulong? PagePhysicalAddress(LinuxKernel kernel, ulong page)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ulong pageSize = kernel.Types.SizeOf(kernel.Types.FindType("struct page"));
        ulong vmemmap = Vmemmap(kernel);
        if (page < vmemmap || (page - vmemmap) % pageSize != 0)
        {
            return null;
        }

        ulong pfn = (page - vmemmap) / pageSize;
        return pfn > (1UL << 40) ? null : pfn * PageSize;
    }

    /// <summary>The base of the vmemmap array: <c>vmemmap_base</c> (KASLR of the memory regions), else VMEMMAP_START.</summary>
    private static ulong Vmemmap(LinuxKernel kernel)
    {
        if (kernel.Arm64Layout is Arm64KernelLayout arm64)
        {
            return arm64.Vmemmap(kernel.Types.SizeOf(kernel.Types.FindType("struct page")));
        }

        if (kernel.Symbols.TryGetAddress("vmemmap_base", out ulong at) && kernel.TryReadU64(at, out ulong v))
        {
            return v;
        }

        return kernel.Paging switch
        {
            PagingMode.Level4 => VmemmapLevel4,
            PagingMode.Level5 => VmemmapLevel5,
            _ => throw new KernelDataException("page cache", $"the page frames of struct page are not known for {kernel.Paging} paging (x86-64 4- and 5-level only)"),
        };
    }

    private sealed class PageCheck(LinuxKernel kernel, string where, ulong mapping, long pages, Dictionary<long, ulong> frames)
    {
        private readonly int _pageType = kernel.Types.FindType("struct page");

        public void AddPage(long index, ulong page, long count)
        {
            ulong? physical = PagePhysicalAddress(kernel, page);
            if (physical is null)
            {
                throw new KernelDataException(page, where, $"the entry for page {index} is no struct page of the vmemmap array");
            }

            // The page must be the one the xarray files it as: its mapping and index (page->mapping, page->index).
            KernelObject p = kernel.ObjectAt(page, _pageType);
            ulong owner = p.Member("mapping").ToUInt64();
            long pageIndex = p.Member("index").ToInt64();
            if (owner != mapping || pageIndex != index)
            {
                throw new KernelDataException(page, where, $"the page filed as {index} belongs to mapping 0x{owner:x} index {pageIndex}, not 0x{mapping:x} index {index}");
            }

            for (long k = 0; k < count && index + k < pages; k++)
            {
                frames[index + k] = physical.Value + (ulong)(k * PageSize);
            }
        }
    }
}
