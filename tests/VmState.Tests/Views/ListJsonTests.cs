using System.Text;
using System.Text.Json;
using VmState.Views;

namespace VmState.Tests.Views;

/// <summary>The one JSON form of the list views (the CLI's --json and the C ABI's process JSON).</summary>
public sealed class ListJsonTests
{
    private sealed record Row(string Name, ulong Address, int Count, bool Flag, string? Note, string? Optional);

    private static readonly ListView<Row> View = new(
        [
            new ListField<Row>("name", FieldKind.Text, r => r.Name),
            new ListField<Row>("address", FieldKind.Hex, r => r.Address),
            new ListField<Row>("count", FieldKind.Integer, r => r.Count),
            new ListField<Row>("flag", FieldKind.Boolean, r => r.Flag),
            new ListField<Row>("note", FieldKind.Text, r => r.Note),
            new ListField<Row>("optional", FieldKind.Text, r => r.Optional, omitWhenNull: true),
        ],
        []);

    private static string Write<T>(ListView<T> view, IEnumerable<T> rows)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            ListJson.WriteArray(w, view, rows);
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    [Fact]
    public void FieldsComeInTheViewsOrderHexAsStringsAndOnlyMarkedNullsAreLeftOut()
    {
        string json = Write(View, [new Row("a\"b", 0xffff_8880_0000_1000, -3, true, null, null), new Row("c", 0, 7, false, "n", "o")]);

        Assert.Equal(
            "[{\"name\":\"a\\u0022b\",\"address\":\"0xffff888000001000\",\"count\":-3,\"flag\":true,\"note\":null},"
            + "{\"name\":\"c\",\"address\":\"0x0\",\"count\":7,\"flag\":false,\"note\":\"n\",\"optional\":\"o\"}]",
            json);
    }

    [Fact]
    public void AValueOfATypeNoListFieldHasIsABugInTheViewNotSilentlyWritten()
    {
        var bad = new ListView<int>([new ListField<int>("x", FieldKind.Integer, r => (double)r)], []);

        var e = Assert.Throws<InvalidOperationException>(() => Write(bad, [1]));
        Assert.Contains("'x'", e.Message, StringComparison.Ordinal);
    }
}
