using System.Diagnostics;
using VmState.Live;
using VmState.Memory;

namespace VmState.Tests.Live;

/// <summary>Process memory of a QEMU that has exited.</summary>
public sealed class QemuProcessMemoryTests
{
    [Fact]
    public void ReadingTheMemoryOfAnExitedQemuIsLiveVmGoneNamingThePid()
    {
        // A process that has exited and been reaped: process_vm_readv answers ESRCH for its pid.
        using Process gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        gone.WaitForExit();
        int pid = gone.Id;
        var memory = new QemuProcessMemory(pid, [(new MemoryRange(0, 0x1000, "pc.ram"), 0x1000)]);

        LiveVmGoneException e = Assert.Throws<LiveVmGoneException>(() => memory.Read(0, new byte[16]));
        Assert.Equal(pid, e.ProcessId);
        Assert.Null(e.SocketPath);
        Assert.Contains("is gone", e.Message, StringComparison.Ordinal);
    }
}

/// <summary>Process memory read through process_vm_readv on this test process itself (its own pid is always readable).</summary>
public sealed class QemuProcessMemorySelfTests
{
    [Fact]
    public void AReadAcrossAdjacentRangesAndManyScatteredReadsReturnTheHostBytes()
    {
        const int Page = 4096;
        byte[] host = GC.AllocateArray<byte>(64 * Page, pinned: true);
        new Random(9).NextBytes(host);
        ulong h = (ulong)System.Runtime.InteropServices.Marshal.UnsafeAddrOfPinnedArrayElement(host, 0);
        {
            // Guest [0, 32 pages) at host page 32, guest [32, 64 pages) at host page 0: one guest read crosses both.
            var memory = new QemuProcessMemory(Environment.ProcessId,
            [
                (new MemoryRange(0, 32 * Page, "a"), h + (32 * Page)),
                (new MemoryRange(32 * Page, 32 * Page, "b"), h),
            ]);
            byte[] got = new byte[2 * Page];
            Assert.Equal(got.Length, memory.Read((31 * Page) + 7, got));
            Assert.Equal(host.AsSpan((63 * Page) + 7, Page - 7).ToArray(), got.AsSpan(0, Page - 7).ToArray());
            Assert.Equal(host.AsSpan(0, Page + 7).ToArray(), got.AsSpan(Page - 7).ToArray());

            // 3000 scattered 8-byte items: three batches of at most 1024 iovecs.
            var rng = new Random(10);
            ulong[] addresses = Enumerable.Range(0, 3000).Select(_ => (ulong)rng.Next(0, (64 * Page) - 8) & ~7UL).Where(a => a / (32 * Page) == (a + 7) / (32 * Page)).ToArray();
            byte[] many = new byte[addresses.Length * 8];
            Assert.Equal(addresses.Length, memory.ReadMany(addresses, 8, many));
            byte[] one = new byte[8];
            for (int i = 0; i < addresses.Length; i++)
            {
                memory.Read(addresses[i], one);
                Assert.Equal(one, many.AsSpan(i * 8, 8).ToArray());
            }

            // An item that is not backed ends the read there.
            ulong[] withHole = [.. addresses.Take(1500), 64 * Page, .. addresses.Take(10)];
            Assert.Equal(1500, memory.ReadMany(withHole, 8, new byte[withHole.Length * 8]));
            Assert.Equal(0, memory.Read(64 * Page, one));
        }
    }

    [Fact]
    public void ALargeReadSplitAcrossCoresReturnsTheSameBytesAsOneCallAndStopsWhereTheRamEnds()
    {
        // 6 MiB of "guest RAM" in three ranges whose host order is shuffled; a read of QemuProcessMemory.ParallelReadBytes
        // or more is split into parts (one per core, at least 1 MiB each).
        const int MiB = 1 << 20;
        byte[] host = GC.AllocateArray<byte>(6 * MiB, pinned: true);
        new Random(11).NextBytes(host);
        ulong h = (ulong)System.Runtime.InteropServices.Marshal.UnsafeAddrOfPinnedArrayElement(host, 0);
        var memory = new QemuProcessMemory(Environment.ProcessId,
        [
            (new MemoryRange(0, 2 * MiB, "a"), h + (4 * MiB)),
            (new MemoryRange(2 * MiB, 2 * MiB, "b"), h),
            (new MemoryRange(4 * MiB, 2 * MiB, "c"), h + (2 * MiB)),
        ]);
        byte[] expected = [.. host.AsSpan(4 * MiB, 2 * MiB), .. host.AsSpan(0, 2 * MiB), .. host.AsSpan(2 * MiB, 2 * MiB)];

        byte[] got = new byte[(5 * MiB) + 123];
        Assert.True(got.Length >= QemuProcessMemory.ParallelReadBytes);
        Assert.Equal(got.Length, memory.Read(4097, got));
        Assert.True(expected.AsSpan(4097, got.Length).SequenceEqual(got));

        // Past the last range: the bytes up to its end, in order, as one call would return.
        byte[] tail = new byte[3 * MiB];
        Assert.Equal(2 * MiB, memory.Read(4 * MiB, tail));
        Assert.True(expected.AsSpan(4 * MiB).SequenceEqual(tail.AsSpan(0, 2 * MiB)));
    }
}
