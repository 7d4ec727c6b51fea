using System.Text.Json.Nodes;
using VmState.Memory;

namespace VmState.Live;

/// <summary>
/// The last-resort live path: guest RAM read with QMP <c>pmemsave</c> into a temporary file (QEMU writes it, we
/// read it back). Slow — about a millisecond a call — but needs no ptrace rights and no QEMU option.
/// </summary>
public sealed class QmpMemory : IPhysicalMemory
{
    private const int MaxChunk = 16 << 20;
    private readonly QmpClient _qmp;
    private readonly MemoryRange[] _ranges;
    private readonly string _scratch = Path.Combine(Path.GetTempPath(), $"vmstate-pmemsave-{Environment.ProcessId}-{Guid.NewGuid():N}");

    /// <summary>Reads the RAM ranges <paramref name="ranges"/> through <paramref name="qmp"/>.</summary>
    public QmpMemory(QmpClient qmp, IReadOnlyList<MemoryRange> ranges)
    {
        _qmp = qmp;
        _ranges = [.. ranges];
    }

    /// <inheritdoc />
    public string Name => $"QMP pmemsave ({_qmp.SocketPath})";

    /// <inheritdoc />
    public IReadOnlyList<MemoryRange> Ranges => _ranges;

    /// <inheritdoc />
    public int Read(ulong address, Span<byte> destination)
    {
        int done = 0;
        try
        {
            foreach (RangePiece p in _ranges.Pieces(address, destination.Length, MaxChunk))
            {
                _qmp.ExecuteAsync("pmemsave", new JsonObject { ["val"] = p.Address, ["size"] = p.Length, ["filename"] = _scratch }).GetAwaiter().GetResult();
                using (FileStream f = File.OpenRead(_scratch))
                {
                    f.ReadExactly(destination.Slice(p.Offset, p.Length));
                }

                done = p.Offset + p.Length;
            }
        }
        finally
        {
            File.Delete(_scratch);
        }

        return done;
    }
}
