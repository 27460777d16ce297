/**
 * Word lists for readable names (calm-red-otter). Short, common, unambiguous when read aloud,
 * nothing offensive, all plain ASCII so every combination is a valid DNS label.
 * 128 × 40 × 128 = 655,360 combinations.
 */
export const ADJECTIVES = [
  'able', 'agile', 'airy', 'amber', 'ample', 'apt', 'arid', 'avid', 'awake', 'bold', 'brave', 'breezy', 'bright', 'brisk',
  'broad', 'calm', 'candid', 'careful', 'cheery', 'chief', 'civil', 'clean', 'clear', 'clever', 'cosmic', 'cosy', 'crisp',
  'curly', 'daring', 'dapper', 'deep', 'eager', 'early', 'easy', 'elated', 'epic', 'even', 'exact', 'fair', 'fancy',
  'fast', 'fine', 'firm', 'fit', 'fluent', 'fond', 'frank', 'free', 'fresh', 'frosty', 'funny', 'gentle', 'giant',
  'glad', 'golden', 'grand', 'happy', 'hardy', 'hearty', 'honest', 'humble', 'icy', 'ideal', 'jolly', 'just', 'keen',
  'kind', 'large', 'lively', 'loyal', 'lucid', 'lucky', 'lunar', 'magic', 'merry', 'mighty', 'mild', 'modest', 'neat',
  'nimble', 'noble', 'open', 'plain', 'polite', 'proud', 'quick', 'quiet', 'rapid', 'rare', 'ready', 'regal', 'rich',
  'robust', 'rosy', 'royal', 'rustic', 'safe', 'sage', 'shiny', 'silent', 'simple', 'sleek', 'smart', 'smooth', 'snowy',
  'solar', 'solid', 'sound', 'spry', 'steady', 'stoic', 'sturdy', 'sunny', 'super', 'swift', 'tame', 'tidy', 'tiny',
  'true', 'urban', 'vast', 'vivid', 'warm', 'wise', 'witty', 'young', 'zany', 'zesty',
] as const;

export const COLORS = [
  'amber', 'aqua', 'azure', 'beige', 'black', 'blue', 'bronze', 'brown', 'coral', 'cream', 'cyan', 'ebony', 'gold', 'gray',
  'green', 'indigo', 'ivory', 'jade', 'khaki', 'lemon', 'lilac', 'lime', 'linen', 'maroon', 'mauve', 'mint', 'navy',
  'ochre', 'olive', 'orange', 'peach', 'pink', 'plum', 'red', 'ruby', 'rust', 'sand', 'silver', 'teal', 'white',
] as const;

export const ANIMALS = [
  'alpaca', 'ant', 'badger', 'bat', 'bear', 'beaver', 'bee', 'bison', 'boar', 'bobcat', 'camel', 'carp', 'cat', 'cheetah',
  'chick', 'clam', 'cobra', 'condor', 'cougar', 'cow', 'coyote', 'crab', 'crane', 'crow', 'deer', 'dingo', 'dodo', 'dog',
  'dolphin', 'donkey', 'dove', 'duck', 'eagle', 'eel', 'egret', 'elk', 'emu', 'falcon', 'ferret', 'finch', 'fox', 'frog',
  'gazelle', 'gecko', 'gibbon', 'goat', 'goose', 'gopher', 'gull', 'hare', 'hawk', 'hen', 'heron', 'hippo', 'horse',
  'hound', 'ibex', 'ibis', 'iguana', 'impala', 'jackal', 'jaguar', 'jay', 'kiwi', 'koala', 'lark', 'lemur', 'lion',
  'llama', 'lobster', 'lynx', 'macaw', 'magpie', 'mole', 'moose', 'moth', 'mouse', 'mule', 'newt', 'ocelot', 'orca',
  'osprey', 'otter', 'owl', 'ox', 'panda', 'panther', 'parrot', 'pelican', 'penguin', 'pigeon', 'pony', 'puffin', 'puma',
  'quail', 'rabbit', 'raven', 'robin', 'salmon', 'seal', 'shark', 'sheep', 'shrew', 'skunk', 'sloth', 'snail', 'sparrow',
  'squid', 'stork', 'swan', 'tapir', 'tiger', 'toad', 'trout', 'tuna', 'turkey', 'turtle', 'viper', 'walrus', 'wasp',
  'weasel', 'whale', 'wolf', 'wombat', 'wren', 'yak', 'zebra', 'kudu',
] as const;
