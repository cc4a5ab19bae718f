using OnnxLora.Training.Data.Internals;

namespace OnnxLora.Training.Sample.Internals;

/// <summary>
/// The sample's English text, made from templates by a seeded generator: a pretraining corpus of
/// short sentences (active and passive, with no pairing between them) and a task set that pairs an
/// active sentence with its passive rewrite ("Anna sees the red cat. =&gt; The red cat is seen by Anna.").
/// The base model learns the words and both sentence forms; only the adapter learns the rewrite.
/// </summary>
internal static class SampleText
{
    private static readonly string[] Names =
    [
        "Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henry",
        "Iris", "Jack", "Kate", "Leo", "Mia", "Noah", "Olivia", "Paul",
    ];

    private static readonly string[] Nouns =
    [
        "cat", "dog", "ball", "book", "apple", "car", "bird", "cake",
        "chair", "door", "lamp", "cup", "hat", "kite", "box", "tree",
    ];

    private static readonly string[] Adjectives =
    [
        "red", "big", "small", "old", "new", "green", "happy", "quiet", "bright", "soft",
    ];

    private static readonly (string Present, string Participle)[] Verbs =
    [
        ("sees", "seen"), ("finds", "found"), ("takes", "taken"), ("likes", "liked"),
        ("holds", "held"), ("paints", "painted"), ("moves", "moved"), ("washes", "washed"),
        ("opens", "opened"), ("buys", "bought"), ("hides", "hidden"), ("drops", "dropped"),
    ];

    private static readonly string[] Places =
    [
        "in the garden", "at the park", "near the river", "on the table",
        "in the kitchen", "by the window", "at school", "under the bridge",
    ];

    private static readonly string[] Times =
    [
        "Every morning", "On Monday", "After lunch", "In the evening", "Today", "Yesterday at noon",
    ];

    /// <summary>Sentences for pretraining the base model.</summary>
    public static List<string> Corpus(int seed, int count)
    {
        var rng = new DeterministicRandom(seed, 11);
        var lines = new List<string>(count);
        for (int i = 0; i < count; i++)
        {
            string name = Pick(rng, Names);
            string other = Pick(rng, Names);
            string noun = Pick(rng, Nouns);
            string adj = Pick(rng, Adjectives);
            var verb = Pick(rng, Verbs);
            string place = Pick(rng, Places);
            string time = Pick(rng, Times);
            lines.Add(rng.NextInt(9) switch
            {
                0 => $"{name} {verb.Present} the {adj} {noun} {place}.",
                1 => $"The {noun} is {adj}.",
                2 => $"{name} has a {adj} {noun}.",
                3 => $"{time} {name} {verb.Present} the {noun}.",
                4 => $"The {adj} {noun} is {place}.",
                5 => $"The {noun} was {verb.Participle} {place}.",
                6 => $"{name} and {other} are {place}.",
                7 => $"A {adj} {noun} was {verb.Participle} by {other}.",
                _ => $"{name} {verb.Present} the {noun} and {other} {Pick(rng, Verbs).Present} the {Pick(rng, Nouns)}.",
            });
        }
        return lines;
    }

    /// <summary>Task lines: an active sentence, "=&gt;", and its passive rewrite.</summary>
    public static List<string> Task(int seed, int count)
    {
        var rng = new DeterministicRandom(seed, 13);
        var lines = new List<string>(count);
        for (int i = 0; i < count; i++)
        {
            string name = Pick(rng, Names);
            string noun = Pick(rng, Nouns);
            string adj = Pick(rng, Adjectives);
            var verb = Pick(rng, Verbs);
            lines.Add($"{name} {verb.Present} the {adj} {noun}. => The {adj} {noun} is {verb.Participle} by {name}.");
        }
        return lines;
    }

    private static T Pick<T>(DeterministicRandom rng, T[] items) => items[rng.NextInt(items.Length)];
}
