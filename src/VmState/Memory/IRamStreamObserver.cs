namespace VmState.Memory;

/// <summary>
/// Sees guest RAM as a snapshot reader meets it in the input, page record by page record, so a one-pass job (extract)
/// can use the data while the input is read for its index instead of reading it a second time. A migration stream
/// lists its RAM blocks first, then page records in any order; a page may appear more than once (a later record
/// replaces an earlier one), and a page with no record is zero.
/// </summary>
/// <remarks>
/// Page data is handed as memory inside the reader's read buffer. It stays valid until the reader hands that buffer
/// to <see cref="ExchangeBuffer"/>; from then on the buffer belongs to the observer, which gives the reader another
/// one of the same size to fill, and may keep the old one (and every page handed from it) until it is done with it.
/// </remarks>
public interface IRamStreamObserver
{
    /// <summary>The input's RAM blocks, in the order its records name them by index.</summary>
    /// <param name="blocks">Each block's name and length in bytes.</param>
    /// <param name="pageSize">The size of a page record's data.</param>
    void BlockList(IReadOnlyList<(string Name, ulong Length)> blocks, int pageSize);

    /// <summary>The page at <paramref name="offset"/> of block <paramref name="block"/> holds <paramref name="data"/>.</summary>
    void Page(int block, ulong offset, ReadOnlyMemory<byte> data);

    /// <summary>
    /// The page at <paramref name="offset"/> of block <paramref name="block"/> is all <paramref name="value"/>;
    /// <paramref name="replaces"/> is true when an earlier record gave the page other content. Not called for a zero
    /// record of a page that reads as zero already (never sent, or zero before).
    /// </summary>
    void Fill(int block, ulong offset, byte value, bool replaces);

    /// <summary>
    /// The reader is about to refill <paramref name="full"/>: the observer takes it, with every page handed from it, and
    /// returns a buffer of the same length for the reader to use from now on.
    /// </summary>
    byte[] ExchangeBuffer(byte[] full);
}
