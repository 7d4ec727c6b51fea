namespace VmState.Linux;

/// <summary>What one poll of a <see cref="KernelLogFollower"/> found.</summary>
/// <param name="Records">The records not returned before, oldest first (on the first poll: every record in the ring).</param>
/// <param name="Missed">Records the ring overwrote before a poll could read them (a gap in the sequence numbers).</param>
/// <param name="IsFirst">True until a poll has seen any record: <paramref name="Records"/> is then the whole ring's content.</param>
public sealed record KernelLogUpdate(IReadOnlyList<KernelLogRecord> Records, ulong Missed, bool IsFirst);

/// <summary>
/// <c>dmesg -w</c> on a running guest: reads the printk ring again on each <see cref="Poll"/> and returns the records
/// with a sequence number above the last one seen, counting those the ring overwrote between two polls. The guest is
/// never paused; each poll reads the ring through the kernel's page tables as it is at that moment.
/// </summary>
public sealed class KernelLogFollower
{
    private readonly Func<IReadOnlyList<KernelLogRecord>> _read;
    private ulong? _seen;

    /// <summary>A follower of <paramref name="kernel"/>'s log (<see cref="KernelLog.Read"/>).</summary>
    public KernelLogFollower(LinuxKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        _read = () => KernelLog.Read(kernel);
    }

    /// <summary>A follower of the records <paramref name="read"/> returns (oldest first, as <see cref="KernelLog.Read"/> does).</summary>
    public KernelLogFollower(Func<IReadOnlyList<KernelLogRecord>> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        _read = read;
    }

    /// <summary>The highest sequence number seen so far, or null before any record was seen.</summary>
    public ulong? LastSequence => _seen;

    /// <summary>Reads the ring once and returns what is new since the last poll.</summary>
    /// <exception cref="KernelDataException">The ring's fields are inconsistent or unreadable.</exception>
    public KernelLogUpdate Poll()
    {
        IReadOnlyList<KernelLogRecord> records = _read();
        ulong? seen = _seen;
        var fresh = new List<KernelLogRecord>();
        foreach (KernelLogRecord r in records)
        {
            if (seen is not ulong s || r.Sequence > s)
            {
                fresh.Add(r);
            }
        }

        ulong missed = seen is ulong prev && fresh.Count > 0 && fresh[0].Sequence > prev + 1 ? fresh[0].Sequence - prev - 1 : 0;
        if (records.Count > 0)
        {
            _seen = Math.Max(seen ?? 0, records[^1].Sequence);
        }

        return new KernelLogUpdate(fresh, missed, IsFirst: seen is null);
    }

    /// <summary>
    /// Polls now, then every <paramref name="interval"/> until <paramref name="cancellationToken"/> is cancelled or
    /// the caller stops enumerating; each update is yielded as soon as it is read (the wait comes after it).
    /// </summary>
    public IEnumerable<KernelLogUpdate> Follow(TimeSpan interval, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(interval, TimeSpan.Zero);
        while (!cancellationToken.IsCancellationRequested)
        {
            yield return Poll();
            if (cancellationToken.WaitHandle.WaitOne(interval))
            {
                yield break;
            }
        }
    }
}
