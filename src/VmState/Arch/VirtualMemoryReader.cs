namespace VmState.Arch;

/// <summary>The page loop every architecture's virtual reads share (x86 <c>AddressSpace</c>, <c>Arm64AddressSpace</c>).</summary>
internal static class VirtualMemoryReader
{
    /// <summary>
    /// Reads <paramref name="destination"/> from <paramref name="virtualAddress"/> one 4 KiB page at a time (the smallest
    /// page either architecture maps, so a page never straddles two translations); returns the bytes read before the
    /// first unmapped or unbacked byte.
    /// </summary>
    public static int Read<TSpace>(TSpace space, ulong virtualAddress, Span<byte> destination)
        where TSpace : IPageTranslator
    {
        int done = 0;
        while (done < destination.Length)
        {
            ulong va = virtualAddress + (ulong)done;
            if (!space.TryTranslate(va, out ulong pa))
            {
                break;
            }

            int n = (int)Math.Min((ulong)(destination.Length - done), 0x1000 - (va & 0xFFF));
            int got = space.Memory.Read(pa, destination.Slice(done, n));
            done += got;
            if (got < n)
            {
                break;
            }
        }

        return done;
    }
}
