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
