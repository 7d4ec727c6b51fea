using System.Text.Json;
using VmState.Arch;

namespace VmState.Cli.Commands;

/// <summary>
/// A translation as <c>vmstate translate</c> (and the web server's translate API) shows it, whatever the architecture:
/// the fields every paging walk has, and the architecture's own words for its header, its levels and its page.
/// </summary>
/// <param name="Translation">The library's result.</param>
/// <param name="WriteHeader">The JSON fields that say which tables were walked (after virtualAddress).</param>
/// <param name="WriteMapped">The architecture's own JSON fields of a mapped address (after user).</param>
/// <param name="ExplainHeader">--explain's first line: the paging mode and the table base.</param>
/// <param name="Levels">The entry read at every level, from the root down.</param>
/// <param name="MappedText">The text after the page size on the result line, e.g. "page, writable, user".</param>
internal sealed record TranslationView(
    IAddressTranslation Translation,
    Action<Utf8JsonWriter> WriteHeader,
    Action<Utf8JsonWriter> WriteMapped,
    string ExplainHeader,
    IReadOnlyList<TranslationView.Level> Levels,
    string MappedText)
{
    /// <summary>The translate --json document.</summary>
    public void WriteJson(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        IAddressTranslation t = Translation;
        w.WriteString("virtualAddress", Hex.Of(t.VirtualAddress));
        WriteHeader(w);
        w.WriteBoolean("mapped", t.Success);
        if (t.PhysicalAddress is ulong pa)
        {
            w.WriteString("physicalAddress", Hex.Of(pa));
            w.WriteNumber("pageSize", t.PageSize);
            w.WriteBoolean("writable", t.Writable);
            w.WriteBoolean("user", t.User);
            WriteMapped(w);
        }
        else
        {
            w.WriteString("failure", t.Failure);
        }

        w.WriteStartArray("levels");
        foreach (Level e in Levels)
        {
            w.WriteStartObject();
            e.WriteLevel(w);
            w.WriteString("entryAddress", Hex.Of(e.Address));
            w.WriteString("value", Hex.Of(e.Value));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>Prints the result line, after the levels with <paramref name="explain"/>.</summary>
    public void WriteText(bool explain)
    {
        if (explain)
        {
            Console.WriteLine(ExplainHeader);
            foreach (Level e in Levels)
            {
                Console.WriteLine($"  {e.Name,-6} at {Hex.Of(e.Address),-18} = {Hex.Of(e.Value),-20} {e.Flags}");
            }
        }

        IAddressTranslation t = Translation;
        Console.WriteLine(t.PhysicalAddress is ulong p
            ? $"{Hex.Of(t.VirtualAddress)} -> {Hex.Of(p)} ({Hex.Size(t.PageSize)} {MappedText})"
            : $"{Hex.Of(t.VirtualAddress)} is not mapped: {t.Failure}");
    }

    /// <summary>One entry of the walk.</summary>
    /// <param name="Name">The level's name in --explain ("PML4E", "L0").</param>
    /// <param name="Address">The entry's physical address.</param>
    /// <param name="Value">The entry.</param>
    /// <param name="Flags">The entry's bits in --explain's words.</param>
    /// <param name="WriteLevel">The JSON fields that name the level (before entryAddress).</param>
    internal sealed record Level(string Name, ulong Address, ulong Value, string Flags, Action<Utf8JsonWriter> WriteLevel);
}
