using System.Runtime.InteropServices;

namespace VmState.History;

/// <summary>
/// The writer's table of every unique page of a store: page hash → content id, in native memory (24 bytes a slot,
/// at most 3/4 full: 32 bytes or less a unique page), so it grows with what the store holds and stays out of the
/// managed heap, whose size the recorder caps. Open addressing with linear probing on the hash's low bits (the hashes
/// are seeded XxHash128 values, evenly spread); removal shifts the following entries back, so no tombstones pile up.
/// </summary>
internal sealed unsafe class PageHashTable : IDisposable
{
    private const int MinCapacity = 1 << 10;

    private Slot* _slots;
    private long _capacity;
    private long _count;

    public PageHashTable()
    {
        Allocate(MinCapacity);
    }

    /// <summary>Entries in the table.</summary>
    public long Count => _count;

    /// <summary>Native memory the table holds, in bytes.</summary>
    public long Bytes => _capacity * sizeof(Slot);

    /// <summary>The content id stored for <paramref name="hash"/>, if any.</summary>
    public bool TryGetValue(UInt128 hash, out long id)
    {
        ObjectDisposedException.ThrowIf(_slots is null, this);
        long mask = _capacity - 1;
        for (long i = (long)(ulong)hash & mask; ; i = (i + 1) & mask)
        {
            Slot* s = _slots + i;
            if (s->IdPlusOne == 0)
            {
                id = -1;
                return false;
            }

            if (s->Hash == hash)
            {
                id = s->IdPlusOne - 1;
                return true;
            }
        }
    }

    /// <summary>Adds <paramref name="hash"/> → <paramref name="id"/> unless the hash is there already; true when added.</summary>
    public bool TryAdd(UInt128 hash, long id)
    {
        ObjectDisposedException.ThrowIf(_slots is null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        if ((_count + 1) * 4 > _capacity * 3)
        {
            Grow();
        }

        long mask = _capacity - 1;
        for (long i = (long)(ulong)hash & mask; ; i = (i + 1) & mask)
        {
            Slot* s = _slots + i;
            if (s->IdPlusOne == 0)
            {
                s->Hash = hash;
                s->IdPlusOne = id + 1;
                _count++;
                return true;
            }

            if (s->Hash == hash)
            {
                return false;
            }
        }
    }

    /// <summary>Removes <paramref name="hash"/>; true when it was there.</summary>
    public bool Remove(UInt128 hash)
    {
        ObjectDisposedException.ThrowIf(_slots is null, this);
        long mask = _capacity - 1;
        long i = (long)(ulong)hash & mask;
        while (true)
        {
            Slot* s = _slots + i;
            if (s->IdPlusOne == 0)
            {
                return false;
            }

            if (s->Hash == hash)
            {
                break;
            }

            i = (i + 1) & mask;
        }

        // Backward-shift deletion (linear probing): move up every later entry of the cluster whose home slot does not
        // lie cyclically between the hole and it.
        long hole = i;
        long j = i;
        while (true)
        {
            j = (j + 1) & mask;
            Slot* s = _slots + j;
            if (s->IdPlusOne == 0)
            {
                break;
            }

            long home = (long)(ulong)s->Hash & mask;
            bool stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
            if (!stays)
            {
                _slots[hole] = *s;
                hole = j;
            }
        }

        _slots[hole] = default;
        _count--;
        return true;
    }

    ~PageHashTable() => Free();

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (_slots is not null)
        {
            NativeMemory.Free(_slots);
            _slots = null;
            _capacity = 0;
            _count = 0;
        }
    }

    private void Allocate(long capacity)
    {
        _slots = (Slot*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(Slot));
        _capacity = capacity;
    }

    private void Grow()
    {
        Slot* old = _slots;
        long oldCapacity = _capacity;
        Allocate(oldCapacity * 2);
        _count = 0;
        long mask = _capacity - 1;
        for (long k = 0; k < oldCapacity; k++)
        {
            Slot e = old[k];
            if (e.IdPlusOne == 0)
            {
                continue;
            }

            long i = (long)(ulong)e.Hash & mask;
            while (_slots[i].IdPlusOne != 0)
            {
                i = (i + 1) & mask;
            }

            _slots[i] = e;
            _count++;
        }

        NativeMemory.Free(old);
    }

    private struct Slot
    {
        // The hash as two halves: 24 bytes a slot, where a UInt128 field would be aligned to 16 (32 bytes).
        public ulong Low;
        public ulong High;

        /// <summary>The content id plus one; 0 marks an empty slot.</summary>
        public long IdPlusOne;

        public UInt128 Hash
        {
            readonly get => new(High, Low);
            set
            {
                Low = (ulong)value;
                High = (ulong)(value >> 64);
            }
        }
    }
}
